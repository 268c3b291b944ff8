//! Content negotiation for Simple API responses (PEP 691), with q-values.

/// The forms wharf can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `application/vnd.pypi.simple.v1+json`
    Json,
    /// `application/vnd.pypi.simple.v1+html`
    Html,
    /// `text/html` (PEP 503 pages for clients that predate PEP 691)
    TextHtml,
}

impl Variant {
    pub fn content_type(self) -> &'static str {
        match self {
            Variant::Json => "application/vnd.pypi.simple.v1+json",
            Variant::Html => "application/vnd.pypi.simple.v1+html",
            Variant::TextHtml => "text/html; charset=utf-8",
        }
    }
}

/// What wharf asks upstream for: JSON preferred, HTML accepted.
pub const UPSTREAM_ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

fn variant_of(media: &str) -> Option<Variant> {
    match media {
        "application/vnd.pypi.simple.v1+json" | "application/vnd.pypi.simple.latest+json" => {
            Some(Variant::Json)
        }
        "application/vnd.pypi.simple.v1+html" | "application/vnd.pypi.simple.latest+html" => {
            Some(Variant::Html)
        }
        "text/html" | "text/*" | "*/*" | "application/*" => Some(Variant::TextHtml),
        _ => None,
    }
}

/// The best variant for an `Accept` header: highest q wins, earlier entries win ties; no header means
/// `text/html`. `None` when nothing acceptable is offered (answer 406).
pub fn negotiate(accept: Option<&str>) -> Option<Variant> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Variant::TextHtml);
    };
    let mut best: Option<(f32, Variant)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        let Some(variant) = variant_of(&media) else {
            continue;
        };
        if q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, variant));
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_decide() {
        assert_eq!(negotiate(None), Some(Variant::TextHtml));
        assert_eq!(negotiate(Some(UPSTREAM_ACCEPT)), Some(Variant::Json));
        assert_eq!(
            negotiate(Some(
                "application/vnd.pypi.simple.v1+json;q=0.5, application/vnd.pypi.simple.v1+html"
            )),
            Some(Variant::Html)
        );
        assert_eq!(
            negotiate(Some(
                "text/html;q=0.9, application/vnd.pypi.simple.latest+json"
            )),
            Some(Variant::Json)
        );
        assert_eq!(negotiate(Some("*/*")), Some(Variant::TextHtml));
        assert_eq!(negotiate(Some("application/json")), None);
        assert_eq!(negotiate(Some("text/html;q=0")), None);
    }
}
