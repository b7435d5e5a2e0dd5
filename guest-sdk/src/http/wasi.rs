//! The transport (wasm32 only): one request over the host's `wasi:http/outgoing-handler`.

use super::{HttpError, Method, Response, Url};

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "http-client",
        path: "wit-http",
        // wasi:io and wasi:clocks come with wasi:http (no shared bindings to map them to).
        generate_all,
    });
}

use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    http_error_code, ErrorCode, Fields, IncomingResponse, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// What `blocking-write-and-flush` takes at most per call.
const WRITE_CHUNK: usize = 4096;
/// What one read asks for.
const READ_CHUNK: u64 = 64 * 1024;

/// Sends one request and reads the whole response.
pub(super) fn send(method: Method, url: &Url, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, HttpError> {
    let failed = |reason: String| HttpError::Failed { url: format!("{}{}", url.origin(), url.path_with_query), reason };
    let request = build(method, url, headers, body.len()).map_err(failed)?;
    let outgoing = request.body().map_err(|()| failed("the request body was already taken".into()))?;
    // Hand the request over first: the host buffers little of the body before sending.
    let pending = outgoing_handler::handle(request, None).map_err(|code| error(code, url, &failed))?;
    write_body(&outgoing, body).map_err(|e| failed(format!("writing the request body: {e}")))?;
    OutgoingBody::finish(outgoing, None).map_err(|code| error(code, url, &failed))?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error(code, url, &failed)),
        Some(Err(())) | None => return Err(failed("the host lost the response".into())),
    };
    read_response(response, url, &failed)
}

fn build(method: Method, url: &Url, headers: &[(&str, &str)], body_len: usize) -> Result<OutgoingRequest, String> {
    let mut fields: Vec<(String, Vec<u8>)> =
        headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    // The length is known: say it, instead of the chunked encoding some servers refuse.
    if body_len > 0 && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        fields.push(("content-length".into(), body_len.to_string().into_bytes()));
    }
    let fields = Fields::from_list(&fields).map_err(|e| format!("header refused: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let method = match method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
    };
    let scheme = if url.scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_method(&method).map_err(|()| "method refused")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme refused")?;
    request.set_authority(Some(&url.authority)).map_err(|()| "authority refused")?;
    request.set_path_with_query(Some(&url.path_with_query)).map_err(|()| "path refused")?;
    Ok(request)
}

fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), String> {
    let stream: OutputStream = outgoing.write().map_err(|()| "the body stream was already taken")?;
    for chunk in body.chunks(WRITE_CHUNK) {
        stream.blocking_write_and_flush(chunk).map_err(|e| stream_error(&e))?;
    }
    Ok(())
}

fn read_response(
    response: IncomingResponse,
    url: &Url,
    failed: &dyn Fn(String) -> HttpError,
) -> Result<Response, HttpError> {
    let status = response.status();
    let incoming = response.consume().map_err(|()| failed("the response body was already taken".into()))?;
    let mut body = Vec::new();
    {
        // The stream is a child of the body: it goes first.
        let stream: InputStream = incoming.stream().map_err(|()| failed("no response body stream".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match http_error_code(&e) {
                        Some(code) => error(code, url, failed),
                        None => body_error(&e.to_debug_string(), &failed),
                    });
                }
            }
        }
    }
    drop(incoming);
    Ok(Response { status, body })
}

/// `wasi:http`'s error code as the SDK's error.
fn error(code: ErrorCode, url: &Url, failed: &dyn Fn(String) -> HttpError) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied { origin: url.origin() },
        ErrorCode::HttpResponseBodySize(limit) => HttpError::BodyTooLarge { limit },
        other => failed(format!("{other:?}")),
    }
}

/// A failed body read carries the host's error as text only (wasmtime-wasi-http 48 does
/// not attach an error code to body errors); its size cap is recognised by that text.
fn body_error(text: &str, failed: &dyn Fn(String) -> HttpError) -> HttpError {
    match text.split_once("body size exceeds limit") {
        Some((_, rest)) => {
            let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
            HttpError::BodyTooLarge { limit: digits.parse().ok() }
        }
        None => failed(format!("reading the response body: {text}")),
    }
}

fn stream_error(e: &StreamError) -> String {
    match e {
        StreamError::Closed => "the stream was closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}
