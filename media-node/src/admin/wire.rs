//! The admin API's wire contract: the bearer-token check and the request bodies, as the
//! operator sends them (the assignment list is in [`ruche_crds::admin`], shared with the
//! operator). Public so that anything answering the same API (the end-to-end suite's
//! admin stand-in) checks and parses them the same way.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use ruche_crds::admin::{Accepted, AssignmentList, StaleList};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Why a request's credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerRefusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token other than the admin token.
    Wrong,
}

impl BearerRefusal {
    /// The label of the refusal in metrics: `missing` or `refused`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Wrong => "refused",
        }
    }

    /// The 401 to answer: "refused" for a wrong token, "required" with a `WWW-Authenticate`
    /// challenge for none.
    pub fn response(self) -> Response {
        match self {
            Self::Wrong => (StatusCode::UNAUTHORIZED, "admin token refused").into_response(),
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "admin token required: Authorization: Bearer <token>",
            )
                .into_response(),
        }
    }
}

/// Whether `headers` carry `Authorization: Bearer <expected>`. The comparison takes the same
/// time whatever the presented token has in common with the expected one (only the length of
/// the token, which is not secret, can shorten it).
pub fn bearer_check(headers: &HeaderMap, expected: &str) -> Result<(), BearerRefusal> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(BearerRefusal::Missing)?;
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(BearerRefusal::Wrong)
    }
}

/// `None` if `headers` carry `Authorization: Bearer <expected>`, else the 401 to answer (see
/// [`bearer_check`]).
pub fn bearer_refusal(headers: &HeaderMap, expected: &str) -> Option<Response> {
    bearer_check(headers, expected)
        .err()
        .map(BearerRefusal::response)
}

/// The list of a `PUT /v1/assignments` body, or the 400 that says what is wrong with it.
pub fn assignment_list(
    body: Result<Json<AssignmentList>, JsonRejection>,
) -> Result<AssignmentList, Box<Response>> {
    body.map(|Json(list)| list).map_err(|rejection| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                format!("invalid assignment list: {}", rejection.body_text()),
            )
                .into_response(),
        )
    })
}

/// The answer to an assignment list: 200 with what the node now holds, or 409 with the newer
/// version it kept.
pub fn assignment_answer(outcome: Result<Accepted, StaleList>) -> Response {
    match outcome {
        Ok(accepted) => Json(accepted).into_response(),
        Err(refused) => (StatusCode::CONFLICT, Json(refused)).into_response(),
    }
}

/// `POST /v1/drain`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainBody {
    /// Seconds from now until live rooms must be gone.
    pub deadline_seconds: Option<u64>,
}

/// `PUT /v1/advertise`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvertiseBody {
    /// `IP:port` clients send media to.
    pub media: String,
}

/// The address in an advertise body, or why it cannot be advertised.
pub fn advertised_addr(raw: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = raw
        .parse()
        .map_err(|_| format!("media: `{raw}` is not an IP:port address"))?;
    if addr.ip().is_unspecified() || addr.ip().is_multicast() || addr.port() == 0 {
        return Err(format!(
            "media: `{raw}` is not an address clients can send media to"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let expected = "s3cret-admin-token";
        assert_eq!(
            bearer_check(&with_authorization("Bearer s3cret-admin-token"), expected),
            Ok(())
        );
        for wrong in [
            "Bearer s3cret-admin-tokeN",
            "Bearer s3cret-admin-token ",
            "Bearer s3cret-admin-toke",
            "Bearer ",
            "bearer s3cret-admin-token",
        ] {
            let got = bearer_check(&with_authorization(wrong), expected);
            let want = if wrong.starts_with("Bearer ") {
                BearerRefusal::Wrong
            } else {
                BearerRefusal::Missing
            };
            assert_eq!(got, Err(want), "{wrong:?}");
        }
        assert_eq!(
            bearer_check(&HeaderMap::new(), expected),
            Err(BearerRefusal::Missing)
        );
        assert_eq!(
            bearer_refusal(&HeaderMap::new(), expected).map(|r| r.status()),
            Some(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn an_advertised_address_is_an_ip_and_port_clients_can_reach() {
        assert_eq!(
            advertised_addr("203.0.113.7:30882"),
            Ok(SocketAddr::from(([203, 0, 113, 7], 30882)))
        );
        assert_eq!(
            advertised_addr("[2001:db8::7]:30882").map(|a| a.to_string()),
            Ok("[2001:db8::7]:30882".to_string())
        );
        for (raw, why) in [
            ("203.0.113.7", "is not an IP:port address"),
            ("node-a:30882", "is not an IP:port address"),
            ("", "is not an IP:port address"),
            (
                "0.0.0.0:30882",
                "is not an address clients can send media to",
            ),
            ("[::]:30882", "is not an address clients can send media to"),
            (
                "203.0.113.7:0",
                "is not an address clients can send media to",
            ),
            (
                "239.1.2.3:30882",
                "is not an address clients can send media to",
            ),
        ] {
            assert_eq!(
                advertised_addr(raw),
                Err(format!("media: `{raw}` {why}")),
                "{raw}"
            );
        }
    }
}
