//! "Did you mean …?" suggestions for misspelt keys and format names.
//!
//! Owns only string similarity; which words are candidates is the caller's business.

/// Edit distance with adjacent transpositions (optimal string alignment), over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rolling rows: two back (for transpositions), previous and current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Folds case and treats `-` and spaces as `_`, so `Metadata-TTL` matches `metadata_ttl` exactly.
fn fold(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Keys are short; a pathological multi-kilobyte key is not a typo and is not worth the quadratic work.
    if word.len() > 256 {
        return None;
    }
    let folded = fold(word);
    let limit = (folded.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|candidate| (edit_distance(&folded, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("negative_tll", "negative_ttl"), 1);
        assert_eq!(edit_distance("upstraem", "upstream"), 1);
    }

    #[test]
    fn closest_suggests_only_plausible_typos() {
        let keys = [
            "format",
            "upstream",
            "upstreams",
            "metadata_ttl",
            "negative_ttl",
        ];
        assert_eq!(closest("negative_tll", &keys), Some("negative_ttl"));
        assert_eq!(closest("negativ_ttl", &keys), Some("negative_ttl"));
        assert_eq!(closest("Metadata-TTL", &keys), Some("metadata_ttl"));
        assert_eq!(closest("fromat", &keys), Some("format"));
        assert_eq!(closest("upstreams", &keys), Some("upstreams"));
        assert_eq!(closest("colour", &keys), None);
        assert_eq!(closest("x", &keys), None);
        assert_eq!(closest(&"a".repeat(10_000), &keys), None);
    }
}
