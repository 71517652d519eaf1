//! gofail's switches, as etcd built with failpoints has them: `GOFAIL_FAILPOINTS="name=terms;…"` sets failpoints
//! at start, and `GOFAIL_HTTP=host:port` serves gofail's HTTP interface:
//! - `GET /` lists every failpoint as `name=terms` lines (empty terms when off), sorted;
//! - `GET /name` its terms, `GET /name/count` how many times a term of them ran;
//! - `PUT /name` with terms in the body sets it, `PUT /failpoints` with `name=terms;…` sets several;
//! - `DELETE /name` clears it.
//!
//! Answers and error texts are gofail's (`204` on a change; `400`/`404`/`500` with its texts).
//!
//! **Threading**: the interface runs on a thread and runtime of its own, so it answers while the server's
//! workers sleep in a failpoint, and from before the server starts until the process ends.

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// gofail's `http.Error`: the text and a newline, as plain text.
fn error(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response()
}

/// One request to the interface.
pub fn answer(method: &Method, uri: &Uri, body: &[u8]) -> Response {
    let key = uri.path().trim_start_matches('/');
    match *method {
        Method::PUT => {
            let text = String::from_utf8_lossy(body);
            let settings = if key.eq_ignore_ascii_case("failpoints") {
                match failpoint::parse_list(&text) {
                    Ok(list) => list,
                    Err(e) => return error(StatusCode::BAD_REQUEST, format!("fail to parse failpoint: {e}")),
                }
            } else {
                vec![(key.to_string(), text.to_string())]
            };
            for (name, terms) in settings {
                if let Err(e) = failpoint::enable(&name, &terms) {
                    return error(StatusCode::BAD_REQUEST, format!("fail to set failpoint: {e}"));
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Method::GET if key.is_empty() => {
            let lines: String =
                failpoint::list().into_iter().map(|(name, terms)| format!("{name}={terms}\n")).collect();
            lines.into_response()
        }
        Method::GET => match key.strip_suffix("/count") {
            Some(name) => match failpoint::status(name) {
                Ok((_, count)) => count.to_string().into_response(),
                Err(e @ failpoint::Error::NoExist) => error(StatusCode::NOT_FOUND, format!("failed to GET: {e}")),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to GET: {e}")),
            },
            None => match failpoint::status(key) {
                Ok((terms, _)) => format!("{terms}\n").into_response(),
                Err(e) => error(StatusCode::NOT_FOUND, format!("failed to GET: {e}")),
            },
        },
        Method::DELETE => match failpoint::disable(key) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("failed to delete failpoint {e}")),
        },
        _ => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed".to_string());
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("PUT"));
            r
        }
    }
}

/// Registers every failpoint, applies `GOFAIL_FAILPOINTS` and serves `GOFAIL_HTTP` if they are set. An error is
/// what gofail stops the process for: a malformed list, or an address it cannot listen on.
pub fn start_from_env() -> Result<(), String> {
    crate::failpoints::register_all();
    if let Some(list) = std::env::var("GOFAIL_FAILPOINTS").ok().filter(|s| !s.is_empty()) {
        let settings = failpoint::parse_list(&list).map_err(|e| format!("fail to parse failpoint: {e}"))?;
        for (name, terms) in settings {
            // gofail sets only the failpoints the binary has, and reports terms it cannot parse.
            if let Err(e @ failpoint::Error::BadParse) = failpoint::enable(&name, &terms) {
                println!("failed to enable \"{name}={terms}\" ({e})");
            }
        }
    }
    let Some(addr) = std::env::var("GOFAIL_HTTP").ok().filter(|s| !s.is_empty()) else { return Ok(()) };
    let listener = std::net::TcpListener::bind(&addr).map_err(|e| format!("listen tcp {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("gofail-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return eprintln!("failpoints: no runtime for {addr}: {e}"),
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let app = axum::Router::new()
                    .fallback(|method: Method, uri: Uri, body: Bytes| async move { answer(&method, &uri, &body) });
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("failpoints: {addr}: {e}");
                }
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
