//! Bounds on the config text, checked before the YAML parser sees it: the parser's cost grows with the square
//! of the nesting depth (100,000 nested `[` took about a minute of CPU), and nothing in a wharf config
//! nests more than a few levels or needs more than a few kilobytes.

use crate::error::ConfigError;

/// Largest config accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Deepest nesting accepted (mappings, lists and flow collections together); a wharf config needs about 5.
pub const MAX_NESTING: usize = 64;

/// The error for a text (or file) larger than [`MAX_CONFIG_BYTES`].
pub(crate) fn too_large(len: u64) -> ConfigError {
    ConfigError::new(
        "",
        format!(
            "the config is {len} bytes, more than the limit of {MAX_CONFIG_BYTES} bytes (1 MiB)"
        ),
    )
    .with_hint("a wharf config is a few kilobytes: check that this is the right file")
}

/// Refuses text that is too large or nests deeper than [`MAX_NESTING`], in one pass over the bytes.
pub(crate) fn check(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large(text.len() as u64));
    }
    match deepest(text) {
        Some((depth, line)) => Err(ConfigError::new(
            "",
            format!("the config nests more than {MAX_NESTING} levels deep (line {line} reaches {depth})"),
        )
        .with_hint("a wharf config nests only a few levels: check the brackets and indentation around that line")),
        None => Ok(()),
    }
}

/// The first place the nesting exceeds [`MAX_NESTING`]: (depth, line number). An estimate from above that
/// needs no parser: flow brackets (`[`, `{`) opened at the start of a token, outside quotes and comments,
/// plus the block levels of the line (indentation steps and `- ` entries that start on the same line).
fn deepest(text: &str) -> Option<(usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (number, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if flow == 0 && !content.is_empty() && !content.starts_with('#') {
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let bytes = content.as_bytes();
        let mut block = indents.len();
        let mut token_start = true;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'#' if token_start => break,
                b'"' | b'\'' if token_start => {
                    i = closing_quote(bytes, i);
                    token_start = false;
                }
                b'[' | b'{' if token_start || flow > 0 => {
                    flow += 1;
                    token_start = true;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    token_start = false;
                }
                b'-' if token_start && flow == 0 && bytes.get(i + 1).is_none_or(|&n| n == b' ') => {
                    block += 1;
                    token_start = true;
                }
                b' ' | b'\t' | b',' | b':' => token_start = true,
                _ => token_start = false,
            }
            if flow + block > MAX_NESTING {
                return Some((flow + block, number + 1));
            }
            i += 1;
        }
    }
    None
}

/// The index of the quote closing the one at `open` on this line (or the line's end): `\` escapes in double
/// quotes, `''` in single quotes.
fn closing_quote(bytes: &[u8], open: usize) -> usize {
    let quote = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            q if q == quote => {
                if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_configs_pass() {
        let text = "listen: \":8080\"\nrepositories:\n  pypi:\n    format: pypi\n    upstream: \"https://x.example/simple/\"\n    file_hosts: [\"a\", \"b\"]\n    # a [comment with [[[[ brackets\n    immutable: ['**/[abc]/**', \"[[[[[[[\"]\n  x: {a: {b: [1, [2, [3]]]}}\n";
        assert_eq!(deepest(text), None);
        assert!(check(text).is_ok());
    }

    #[test]
    fn deep_flow_nesting_is_refused_quickly() {
        let text = "[".repeat(100_000);
        let started = std::time::Instant::now();
        let error = check(&text).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            error.message.contains("more than 64 levels"),
            "{}",
            error.message
        );
        assert!(check(&format!("a: {}", "{a: ".repeat(70))).is_err());
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        assert!(check(&format!("{}x", "- ".repeat(70))).is_err());
        let mut indented = String::new();
        for level in 0..70 {
            indented.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        assert!(check(&indented).is_err());
        let mut shallow = String::new();
        for level in 0..50 {
            shallow.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        assert!(check(&shallow).is_ok());
    }

    #[test]
    fn large_texts_are_refused() {
        let text = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        assert!(check(&text).unwrap_err().message.contains("1 MiB"));
    }
}
