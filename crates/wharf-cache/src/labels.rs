//! Closed sets for metric label values. A label value is a time series for as long as the process lives, so
//! nothing a client or an upstream chooses may become one as it is: methods and status codes are mapped onto
//! fixed lists here, and repository names come from the configuration only.

use http::Method;

/// The label of a request method: one of the methods wharf's clients use, or `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Status codes that keep their own label: what wharf answers and what registries commonly do.
const KNOWN_STATUSES: [(u16, &str); 34] = [
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (206, "206"),
    (301, "301"),
    (302, "302"),
    (303, "303"),
    (304, "304"),
    (307, "307"),
    (308, "308"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (408, "408"),
    (409, "409"),
    (410, "410"),
    (411, "411"),
    (412, "412"),
    (413, "413"),
    (414, "414"),
    (415, "415"),
    (416, "416"),
    (422, "422"),
    (429, "429"),
    (431, "431"),
    (500, "500"),
    (501, "501"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// The label of a status code: the code itself when it is one wharf or a registry commonly answers (so
/// `status="404"` keeps working in queries), otherwise its class (`2xx` .. `5xx`), or `other` outside 100-599.
pub fn status_label(status: u16) -> &'static str {
    if let Some((_, label)) = KNOWN_STATUSES.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_onto_a_closed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for made_up in ["L0000001XXXX", "get", "PROPFIND", "CONNECT", "TRACE"] {
            let method = Method::from_bytes(made_up.as_bytes()).expect("a valid token");
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }

    #[test]
    fn every_status_code_maps_onto_a_bounded_set() {
        let labels: std::collections::HashSet<&str> = (0..=u16::MAX).map(status_label).collect();
        assert_eq!(labels.len(), KNOWN_STATUSES.len() + 6);
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(299), "2xx");
        assert_eq!(status_label(451), "4xx");
        assert_eq!(status_label(999), "other");
        assert_eq!(status_label(0), "other");
    }
}
