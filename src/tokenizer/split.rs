//! llama.cpp's pre-tokenizer splits (`unicode_regex_split`, src/unicode.cpp) for the expressions
//! the supported BPE pre-tokenizer types use, over llama.cpp's own Unicode tables
//! (src/unicode-data.cpp, turned into Rust by build.rs), so that every code point falls in the
//! category llama.cpp gives it.
//!
//! Each split cuts every piece the previous ones left into its matches and the text between
//! them. GPT-2's and Qwen2's patterns are llama.cpp's hand-written matchers
//! (`unicode_regex_split_custom_gpt2`, `_qwen2`), quirks included; the others llama.cpp runs
//! through `std::regex` on a "collapsed" text where every non-ASCII code point stands for its
//! category, which comes down to the character classes below.

mod tables {
    include!(concat!(env!("OUT_DIR"), "/unicode_tables.rs"));
}

/// One expression of a pre-tokenizer type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Split {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Qwen2,
    /// `[\p{P}\$\+<=>\^~\|]+`.
    PunctuationRuns,
    /// `\p{N}+`.
    NumberRuns,
    /// `\p{N}`.
    EachNumber,
    /// `[0-9][0-9][0-9]`.
    ThreeDigits,
}

const NUMBER: u16 = 0x0002;
const LETTER: u16 = 0x0004;
const PUNCTUATION: u16 = 0x0020;
const CATEGORIES: u16 = 0x00FF;
const WHITESPACE: u16 = 0x0100;

/// `unicode_cpt_flags` of a code point: its category, and whether it is whitespace. (The case
/// and NFD bits llama.cpp also keeps play no part in these splits.) 0 past the piece's ends.
#[derive(Clone, Copy, Default)]
struct Flags(u16);

impl Flags {
    fn of(cpt: u32) -> Flags {
        let ranges = &tables::UNICODE_RANGES_FLAGS;
        let i = ranges.partition_point(|&(start, _)| start <= cpt);
        if i == 0 || i == ranges.len() {
            return Flags(0); // beyond the last code point
        }
        let mut flags = ranges[i - 1].1;
        if tables::UNICODE_WHITESPACE.binary_search(&cpt).is_ok() {
            flags |= WHITESPACE;
        }
        Flags(flags)
    }
    fn any(self) -> bool {
        self.0 != 0
    }
    fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
    /// What the collapsed text holds for a non-ASCII code point: its category unless it is
    /// whitespace.
    fn collapsed_category(self) -> Option<u16> {
        (!self.is_whitespace()).then_some(self.0 & CATEGORIES)
    }
}

/// Splits `text` as `unicode_regex_split` does with `splits`, before the byte encoding.
pub(super) fn split<'t>(text: &'t str, splits: &[Split]) -> Vec<&'t str> {
    let cpts: Vec<u32> = text.chars().map(u32::from).collect();
    let mut offsets = vec![cpts.len()];
    for s in splits {
        offsets = match s {
            Split::Gpt2 => custom(&cpts, &offsets, gpt2),
            Split::Qwen2 => custom(&cpts, &offsets, qwen2),
            Split::PunctuationRuns => by_class(&cpts, &offsets, is_punctuation_class, true),
            Split::NumberRuns => by_class(&cpts, &offsets, is_number_class, true),
            Split::EachNumber => by_class(&cpts, &offsets, is_number_class, false),
            Split::ThreeDigits => three_digits(&cpts, &offsets),
        };
    }
    let mut bytes = text.char_indices().map(|(b, _)| b).collect::<Vec<_>>();
    bytes.push(text.len());
    let mut start = 0;
    offsets
        .iter()
        .map(|&n| {
            let piece = &text[bytes[start]..bytes[start + n]];
            start += n;
            piece
        })
        .collect()
}

/// `[\xD3` + the ASCII punctuation of `k_ucat_map` + `\$\+<=>\^~\|]` on the collapsed text.
fn is_punctuation_class(cpt: u32) -> bool {
    if cpt < 128 {
        b"!\"#%&'()*,-./:;?@[\\]_{}$+<=>^~|".contains(&(cpt as u8))
    } else {
        Flags::of(cpt).collapsed_category() == Some(PUNCTUATION)
    }
}

/// `[\xD1\x30-\x39]` on the collapsed text.
fn is_number_class(cpt: u32) -> bool {
    if cpt < 128 {
        (b'0' as u32..=b'9' as u32).contains(&cpt)
    } else {
        Flags::of(cpt).collapsed_category() == Some(NUMBER)
    }
}

/// Lengths in code points of the pieces, as `unicode_regex_split_stl` records them: within
/// each piece, the text before a match (when not empty), then the match.
struct Pieces {
    lengths: Vec<usize>,
    prev_end: usize,
}

impl Pieces {
    /// `_add_token`: ends a piece at `end`; returns its length.
    fn add(&mut self, end: usize) -> usize {
        let n = end - self.prev_end;
        if n > 0 {
            self.lengths.push(n);
        }
        self.prev_end = end;
        n
    }
}

/// One piece of the text as the custom matchers see it: code points outside it read as
/// `OUT_OF_RANGE` with no flags.
struct Piece<'c> {
    cpts: &'c [u32],
    ini: usize,
    end: usize,
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

impl Piece<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    /// Where the piece both matchers end with at `pos` ends, `whitespaces` whitespace code
    /// points being there: `\s+(?!\S)` (all but the last when text follows), `\s+`, or, with
    /// none, the one code point that matches nothing.
    fn whitespace_or_one(&self, pos: usize, whitespaces: usize) -> usize {
        if whitespaces > 1 && self.cpt(pos + whitespaces) != OUT_OF_RANGE {
            pos + whitespaces - 1
        } else {
            pos + whitespaces.max(1)
        }
    }
    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            Flags::of(self.cpts[pos])
        } else {
            Flags(0)
        }
    }
}

fn custom(cpts: &[u32], offsets: &[usize], matcher: fn(&Piece, &mut Pieces)) -> Vec<usize> {
    let mut out = Pieces {
        lengths: Vec::with_capacity(offsets.len()),
        prev_end: 0,
    };
    let mut start = 0;
    for &n in offsets {
        let piece = Piece {
            cpts,
            ini: start,
            end: start + n,
        };
        out.prev_end = start;
        matcher(&piece, &mut out);
        start += n;
    }
    out.lengths
}

const fn c(ch: char) -> u32 {
    ch as u32
}

/// `unicode_regex_split_custom_gpt2`.
fn gpt2(p: &Piece, out: &mut Pieces) {
    let mut pos = p.ini;
    while pos < p.end {
        let cpt = p.cpt(pos);
        let flags = p.flags(pos);
        // 's|'t|'re|'ve|'m|'ll|'d
        if cpt == c('\'') && pos + 1 < p.end {
            let next = p.cpt(pos + 1);
            if [c('s'), c('t'), c('m'), c('d')].contains(&next) {
                pos += out.add(pos + 2);
                continue;
            }
            if pos + 2 < p.end {
                let pair = (next, p.cpt(pos + 2));
                if [(c('r'), c('e')), (c('v'), c('e')), (c('l'), c('l'))].contains(&pair) {
                    pos += out.add(pos + 3);
                    continue;
                }
            }
        }
        let space = cpt == c(' ');
        let mut flags2 = if space { p.flags(pos + 1) } else { flags };
        // <space>?\p{L}+, <space>?\p{N}+, <space>?[^\s\p{L}\p{N}]+
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any();
        let classes: [fn(Flags) -> bool; 3] = [Flags::is_letter, Flags::is_number, other];
        if let Some(class) = classes.into_iter().find(|class| class(flags2)) {
            pos += usize::from(space);
            while class(flags2) {
                pos += 1;
                flags2 = p.flags(pos);
            }
            out.add(pos);
            continue;
        }
        let mut whitespaces = 0;
        while p.flags(pos + whitespaces).is_whitespace() {
            whitespaces += 1;
        }
        pos = p.whitespace_or_one(pos, whitespaces);
        out.add(pos);
    }
}

/// `unicode_regex_split_custom_qwen2`.
fn qwen2(p: &Piece, out: &mut Pieces) {
    let is_cr_lf = |cpt: u32| cpt == c('\r') || cpt == c('\n');
    let mut pos = p.ini;
    while pos < p.end {
        let cpt = p.cpt(pos);
        let flags = p.flags(pos);
        // (?i:'s|'t|'re|'ve|'m|'ll|'d). llama.cpp lowers with `unicode_tolower`; no code point
        // outside ASCII lowers to one of these letters, so ASCII lowering is the same here.
        if cpt == c('\'') && pos + 1 < p.end {
            let lower = |x: u32| char::from_u32(x).map_or(x, |ch| c(ch.to_ascii_lowercase()));
            let next = lower(p.cpt(pos + 1));
            if [c('s'), c('t'), c('m'), c('d')].contains(&next) {
                pos += out.add(pos + 2);
                continue;
            }
            if pos + 2 < p.end {
                let pair = (next, lower(p.cpt(pos + 2)));
                if [(c('r'), c('e')), (c('v'), c('e')), (c('l'), c('l'))].contains(&pair) {
                    pos += out.add(pos + 3);
                    continue;
                }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_cr_lf(cpt) || flags.is_number())
            && (flags.is_letter() || p.flags(pos + 1).is_letter())
        {
            pos += 1;
            while p.flags(pos).is_letter() {
                pos += 1;
            }
            out.add(pos);
            continue;
        }
        // \p{N}
        if flags.is_number() {
            pos += 1;
            out.add(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]* (llama.cpp tests the first code point's flags for
        // being any, not the one after the space)
        let mut flags2 = if cpt == c(' ') {
            p.flags(pos + 1)
        } else {
            flags
        };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number());
        if other(flags2) && flags.any() {
            pos += usize::from(cpt == c(' '));
            while other(flags2) && flags2.any() {
                pos += 1;
                flags2 = p.flags(pos);
            }
            while is_cr_lf(p.cpt(pos)) {
                pos += 1;
            }
            out.add(pos);
            continue;
        }
        let mut whitespaces = 0;
        let mut last_cr_lf_end = 0;
        while p.flags(pos + whitespaces).is_whitespace() {
            if is_cr_lf(p.cpt(pos + whitespaces)) {
                last_cr_lf_end = pos + whitespaces + 1;
            }
            whitespaces += 1;
        }
        // \s*[\r\n]+
        if last_cr_lf_end > 0 {
            pos = last_cr_lf_end;
            out.add(pos);
            continue;
        }
        pos = p.whitespace_or_one(pos, whitespaces);
        out.add(pos);
    }
}

/// A one-class expression, `[class]+` (`runs`) or `[class]`, as `unicode_regex_split_stl`
/// applies it: leftmost matches, the longest for a run.
fn by_class(cpts: &[u32], offsets: &[usize], class: fn(u32) -> bool, runs: bool) -> Vec<usize> {
    regex_split(cpts, offsets, |piece, from| {
        let s = from + piece[from..].iter().position(|&x| class(x))?;
        let e = if runs {
            s + piece[s..].iter().take_while(|&&x| class(x)).count()
        } else {
            s + 1
        };
        Some((s, e))
    })
}

/// `[0-9][0-9][0-9]`, which llama.cpp runs on the code points themselves (no category in it).
fn three_digits(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    let digit = |x: u32| (c('0')..=c('9')).contains(&x);
    regex_split(cpts, offsets, |piece, from| {
        (from..piece.len().saturating_sub(2))
            .find(|&s| piece[s..s + 3].iter().all(|&x| digit(x)))
            .map(|s| (s, s + 3))
    })
}

/// `unicode_regex_split_stl`: in each piece, every match (found from where the last one ended)
/// and the text before it become pieces, and so does the text after the last.
fn regex_split(
    cpts: &[u32],
    offsets: &[usize],
    find: impl Fn(&[u32], usize) -> Option<(usize, usize)>,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0;
    for &n in offsets {
        let piece = &cpts[start..start + n];
        let mut at = 0;
        while let Some((s, e)) = find(piece, at) {
            if s > at {
                out.push(s - at);
            }
            out.push(e - s);
            at = e;
        }
        if at < n {
            out.push(n - at);
        }
        start += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_llama_cpp_tables() {
        assert!(Flags::of(c('a')).is_letter());
        assert!(Flags::of(c('7')).is_number());
        assert!(Flags::of(c(' ')).is_whitespace());
        assert!(Flags::of(0x00A0).is_whitespace()); // no-break space
        assert!(Flags::of(c('é')).is_letter());
        assert!(Flags::of(0x0663).is_number()); // Arabic-Indic three
        assert!(is_punctuation_class(c('$')) && !is_punctuation_class(c('`')));
        assert!(is_punctuation_class(0x00BF)); // ¿
        assert!(!Flags::of(0x11_0000).any());
    }

    #[test]
    fn splits_as_the_patterns_say() {
        let gpt2 = |t| split(t, &[Split::Gpt2]);
        assert_eq!(
            gpt2("Hello world's  end"),
            ["Hello", " world", "'s", " ", " end"]
        );
        assert_eq!(gpt2("a  \n"), ["a", "  \n"]);
        assert_eq!(gpt2("x 12ab!?"), ["x", " 12", "ab", "!?"]);
        let qwen = |t| split(t, &[Split::Qwen2]);
        assert_eq!(
            qwen("He's 123\r\n\nok"),
            ["He", "'s", " ", "1", "2", "3", "\r\n\n", "ok"]
        );
        assert_eq!(qwen("(x) .. \n"), ["(x", ")", " ..", " \n"]);
        let default = [
            Split::PunctuationRuns,
            Split::Gpt2,
            Split::NumberRuns,
            Split::ThreeDigits,
        ];
        assert_eq!(
            split("a+b 12345", &default),
            ["a", "+", "b", " ", "123", "45"]
        );
        assert_eq!(
            split("v1.25", &[Split::EachNumber, Split::Gpt2]),
            ["v", "1", ".", "2", "5"]
        );
        assert_eq!(split("", &default), Vec::<&str>::new());
    }
}
