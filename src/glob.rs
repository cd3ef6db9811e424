//! Shell-style globs over checkpoint names (`--filter 'blk.*.l_out'`, a candidate's claims):
//! `*` any run of characters, `?` one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one
//! character of or not of a set, `{l_out,attn_norm}` one of several alternatives, and `\`
//! taking the next character literally. A checkpoint name has no path separator, so `*` and
//! `**` are the same.

use std::fmt;

#[derive(Debug, thiserror::Error)]
#[error("glob {pattern:?}: {problem}")]
pub struct GlobError {
    pattern: String,
    problem: &'static str,
}

#[derive(Clone, PartialEq)]
enum Token {
    Char(char),
    AnyChar,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// At most this many patterns after the `{...}` are expanded (`{a,b}{c,d}` is four).
const MAX_ALTERNATIVES: usize = 256;

#[derive(Clone)]
pub struct Glob {
    pattern: String,
    /// The pattern with every `{...}` expanded: a name matches when one of these does.
    alternatives: Vec<Vec<Token>>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let error = |problem| GlobError {
            pattern: pattern.to_string(),
            problem,
        };
        let mut chars = pattern.chars().peekable();
        // The expansions so far, then, inside `{...}`, its alternatives so far and the current
        // one.
        let mut outer: Vec<Vec<Token>> = vec![Vec::new()];
        let mut alternatives: Option<(Vec<Vec<Token>>, Vec<Token>)> = None;
        while let Some(ch) = chars.next() {
            let token = match ch {
                '*' => {
                    while chars.peek() == Some(&'*') {
                        chars.next();
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyChar,
                '\\' => Token::Char(chars.next().ok_or_else(|| error("ends with '\\'"))?),
                '[' => {
                    let negated = matches!(chars.peek(), Some('!' | '^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let lo = match chars.next() {
                            None => return Err(error("'[' is not closed")),
                            Some(']') if !first => break,
                            Some('\\') => chars.next().ok_or_else(|| error("ends with '\\'"))?,
                            Some(c) => c,
                        };
                        first = false;
                        let mut ahead = chars.clone();
                        let hi = match (ahead.next(), ahead.next()) {
                            (Some('-'), Some(hi)) if hi != ']' => {
                                chars.next();
                                chars.next();
                                hi
                            }
                            _ => lo,
                        };
                        if hi < lo {
                            return Err(error("a range in '[...]' runs backwards"));
                        }
                        ranges.push((lo, hi));
                    }
                    Token::Class { negated, ranges }
                }
                '{' => {
                    if alternatives.is_some() {
                        return Err(error("'{' inside '{...}'"));
                    }
                    alternatives = Some((Vec::new(), Vec::new()));
                    continue;
                }
                ',' if alternatives.is_some() => {
                    let (done, current) = alternatives.as_mut().expect("inside {...}");
                    done.push(std::mem::take(current));
                    continue;
                }
                '}' if alternatives.is_some() => {
                    let (mut done, current) = alternatives.take().expect("inside {...}");
                    done.push(current);
                    if outer.len() * done.len() > MAX_ALTERNATIVES {
                        return Err(error("too many alternatives in '{...}'"));
                    }
                    outer = outer
                        .iter()
                        .flat_map(|prefix| {
                            done.iter()
                                .map(move |alt| [prefix.as_slice(), alt].concat())
                        })
                        .collect();
                    continue;
                }
                c => Token::Char(c),
            };
            match alternatives.as_mut() {
                Some((_, current)) => current.push(token),
                None => outer.iter_mut().for_each(|o| o.push(token.clone())),
            }
        }
        if alternatives.is_some() {
            return Err(error("'{' is not closed"));
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            alternatives: outer,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        self.alternatives.iter().any(|p| matches(p, &chars))
    }
}

/// Whether `pattern` matches all of `text`: the usual wildcard walk, which on a mismatch goes
/// back only to the last `*` (taking one more character into it), so it takes at most
/// (pattern length × text length) steps whatever the pattern.
fn matches(pattern: &[Token], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: where the pattern resumes and where the text it took ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::AnyRun) => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(token) if one(token, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((resume, taken)) => {
                    star = Some((resume, taken + 1));
                    p = resume;
                    t = taken + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|token| *token == Token::AnyRun)
}

/// Whether a one-character token matches `c`.
fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Char(want) => c == *want,
        Token::AnyChar => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
        }
        Token::AnyRun => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().is_match(name)
    }

    #[test]
    fn globs_match_checkpoint_names() {
        assert!(m("blk.*.l_out", "blk.12.l_out"));
        assert!(!m("blk.*.l_out", "blk.12.l_out2"));
        assert!(m("result_output", "result_output"));
        assert!(!m("result_output", "result_norm"));
        assert!(m("*", ""));
        assert!(m("blk.?.attn_*", "blk.3.attn_norm"));
        assert!(!m("blk.?.attn_*", "blk.13.attn_norm"));
        assert!(m("blk.[0-2].*", "blk.2.ffn_out"));
        assert!(!m("blk.[!0-2].*", "blk.2.ffn_out"));
        assert!(m("blk.[^0-2].*", "blk.7.ffn_out"));
        assert!(m("blk.*.{l_out,attn_norm}", "blk.0.attn_norm"));
        assert!(!m("blk.*.{l_out,attn_norm}", "blk.0.ffn_norm"));
        assert!(m("{,blk.0.}l_out", "l_out"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("[]x]", "]") && m("[a-]", "-"));
        assert!(m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaa"));
        assert!(m("{a,b}{c,d}", "bd") && !m("{a,b}{c,d}", "ab"));
        // Many stars against a long name that does not match: quadratic at worst, not
        // exponential.
        let stars = "*a".repeat(30) + "*b";
        assert!(!m(&stars, &"a".repeat(5000)));
    }

    #[test]
    fn malformed_globs_are_named() {
        let many = "{a,b}".repeat(9);
        for bad in ["blk.[0-2", "{a,b", "{a,{b}}", "x\\", "[z-a]", many.as_str()] {
            let e = Glob::new(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
