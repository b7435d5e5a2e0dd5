//! The provider's HTTP side: forms with the client's credentials, GETs, and replies read
//! within `max_response_bytes`.

use super::{AuthError, ErrorReply, Provider};

impl Provider {
    /// Sends a form with the client's credentials. The outer error is a transport or
    /// provider failure; the inner one an OAuth error reply.
    pub(super) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Result<Vec<u8>, ErrorReply>, AuthError> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut request = self.http.post(url);
        match &self.cfg.client_secret {
            // client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
            Some(secret) => {
                request = request.basic_auth(form_encode(&self.cfg.client_id), Some(form_encode(secret)));
            }
            None => fields.push(("client_id", self.cfg.client_id.as_str())),
        }
        let response = self.send(request.form(&fields), url).await?;
        let status = response.status();
        let body = self.read(response, url).await?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        match serde_json::from_slice::<ErrorReply>(&body) {
            Ok(e) if status.is_client_error() => Ok(Err(e)),
            _ => Err(AuthError::Provider(format!("{url} answered {status}"))),
        }
    }

    pub(super) async fn get(&self, url: &str) -> Result<Vec<u8>, AuthError> {
        let response = self.send(self.http.get(url), url).await?;
        let status = response.status();
        let body = self.read(response, url).await?;
        if !status.is_success() {
            return Err(AuthError::Provider(format!("{url} answered {status}")));
        }
        Ok(body)
    }

    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, AuthError> {
        request.send().await.map_err(|e| AuthError::Provider(format!("cannot reach {url}: {}", error_chain(&e))))
    }

    pub(super) async fn read(&self, mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, AuthError> {
        let max = self.cfg.max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| AuthError::Provider(format!("reading from {url}: {}", error_chain(&e))))?
        {
            if body.len() + chunk.len() > max {
                return Err(AuthError::Provider(format!("{url} sent more than {max} bytes (max_response_bytes)")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
