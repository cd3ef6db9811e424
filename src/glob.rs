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
    /// The alternatives of a `{...}`.
    OneOf(Vec<Vec<Token>>),
}

#[derive(Clone)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
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
        // The token lists being built: the outer pattern, then, inside `{...}`, the
        // alternatives so far and the current one.
        let mut outer: Vec<Token> = Vec::new();
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
                    outer.push(Token::OneOf(done));
                    continue;
                }
                c => Token::Char(c),
            };
            match alternatives.as_mut() {
                Some((_, current)) => current.push(token),
                None => outer.push(token),
            }
        }
        if alternatives.is_some() {
            return Err(error("'{' is not closed"));
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            tokens: outer,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        matches(&self.tokens, &[], &chars)
    }
}

/// Whether `tokens` then `rest` match all of `text`.
fn matches(tokens: &[Token], rest: &[&[Token]], text: &[char]) -> bool {
    let Some((token, tail)) = tokens.split_first() else {
        return match rest.split_first() {
            Some((next, rest)) => matches(next, rest, text),
            None => text.is_empty(),
        };
    };
    match token {
        Token::AnyRun => (0..=text.len()).any(|k| matches(tail, rest, &text[k..])),
        Token::OneOf(alternatives) => {
            let mut after: Vec<&[Token]> = Vec::with_capacity(rest.len() + 1);
            after.push(tail);
            after.extend_from_slice(rest);
            alternatives.iter().any(|alt| matches(alt, &after, text))
        }
        _ => {
            let Some((&c, text_tail)) = text.split_first() else {
                return false;
            };
            let one = match token {
                Token::Char(want) => c == *want,
                Token::AnyChar => true,
                Token::Class { negated, ranges } => {
                    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
                }
                Token::AnyRun | Token::OneOf(_) => unreachable!("handled above"),
            };
            one && matches(tail, rest, text_tail)
        }
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
    }

    #[test]
    fn malformed_globs_are_named() {
        for bad in ["blk.[0-2", "{a,b", "{a,{b}}", "x\\", "[z-a]"] {
            let e = Glob::new(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
