//! The CONNECT options a client sends, decoded the way nats-server decodes them.

use serde::Deserialize;

use super::errors::ProtoError;

/// Options from a client's `CONNECT {json}`.
///
/// Defaults follow nats-server (`defaultOpts`): a key that is missing leaves
/// `verbose`, `pedantic` and `echo` TRUE. That is also what applies before any
/// CONNECT arrived (telnet sessions on a server without auth get `+OK`s), so
/// [`ConnectOptions::default`] is the right state for a fresh connection.
/// Unknown keys (jwt, nkey, sig, account, ...) are ignored; a `null` value
/// counts as missing, as in Go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub verbose: bool,
    pub pedantic: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub protocol: u8,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth_token: Option<String>,
    pub tls_required: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            user: None,
            pass: None,
            auth_token: None,
            tls_required: false,
        }
    }
}

/// Wire shape: every field optional so that missing and `null` both fall back
/// to the nats-server default instead of failing the whole CONNECT.
#[derive(Deserialize)]
struct RawConnect {
    verbose: Option<bool>,
    pedantic: Option<bool>,
    echo: Option<bool>,
    headers: Option<bool>,
    no_responders: Option<bool>,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    protocol: Option<u8>,
    user: Option<String>,
    pass: Option<String>,
    auth_token: Option<String>,
    tls_required: Option<bool>,
}

impl ConnectOptions {
    /// Decodes the JSON argument of CONNECT.
    pub fn from_json(json: &[u8]) -> Result<Self, ProtoError> {
        let raw: RawConnect =
            serde_json::from_slice(json).map_err(|e| ProtoError::ConnectJson(e.to_string()))?;
        let d = ConnectOptions::default();
        // nats-server treats an empty string like an absent one everywhere it
        // looks at these, so normalise to None here once.
        let nonempty = |s: Option<String>| s.filter(|v| !v.is_empty());
        Ok(ConnectOptions {
            verbose: raw.verbose.unwrap_or(d.verbose),
            pedantic: raw.pedantic.unwrap_or(d.pedantic),
            echo: raw.echo.unwrap_or(d.echo),
            headers: raw.headers.unwrap_or(d.headers),
            no_responders: raw.no_responders.unwrap_or(d.no_responders),
            name: nonempty(raw.name),
            lang: nonempty(raw.lang),
            version: nonempty(raw.version),
            protocol: raw.protocol.unwrap_or(d.protocol),
            user: nonempty(raw.user),
            pass: nonempty(raw.pass),
            auth_token: nonempty(raw.auth_token),
            tls_required: raw.tls_required.unwrap_or(d.tls_required),
        })
    }

    /// The checks nats-server runs on a CLIENT's CONNECT after authentication
    /// succeeded, in its order: protocol range, then no_responders without
    /// headers. Both errors send -ERR and close.
    ///
    /// `server_headers` is whether the server offers headers (INFO
    /// `headers`); headers are only on when both sides want them.
    pub fn validate(&self, server_headers: bool) -> Result<(), ProtoError> {
        if self.protocol > 1 {
            return Err(ProtoError::BadClientProtocol);
        }
        if self.no_responders && !(self.headers && server_headers) {
            return Err(ProtoError::NoRespondersRequiresHeaders);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_ignored_and_defaults_applied() {
        let json = br#"{"verbose":false,"pedantic":false,"tls_required":false,"name":"svc","lang":"python3","version":"2.9.0","protocol":1,"headers":true,"no_responders":true,"jwt":null,"sig":"x","nkey":"","account":"A","new_field":{"deep":[1,2,3]}}"#;
        let o = ConnectOptions::from_json(json).unwrap();
        assert!(!o.verbose && !o.pedantic && o.echo && o.headers && o.no_responders);
        assert_eq!(o.name.as_deref(), Some("svc"));
        assert_eq!(o.lang.as_deref(), Some("python3"));
        assert_eq!(o.version.as_deref(), Some("2.9.0"));
        assert_eq!(o.protocol, 1);
        assert_eq!(o.user, None);
        assert!(o.validate(true).is_ok());
    }

    #[test]
    fn empty_object_gives_nats_server_defaults() {
        let o = ConnectOptions::from_json(b"{}").unwrap();
        assert_eq!(o, ConnectOptions::default());
        assert!(o.verbose && o.pedantic && o.echo && !o.headers);
    }

    #[test]
    fn nulls_count_as_missing() {
        let o = ConnectOptions::from_json(br#"{"echo":null,"user":null,"pass":"p"}"#).unwrap();
        assert!(o.echo);
        assert_eq!(o.pass.as_deref(), Some("p"));
    }

    #[test]
    fn bad_json_and_bad_types() {
        assert!(matches!(
            ConnectOptions::from_json(b"{\"verbose\":"),
            Err(ProtoError::ConnectJson(_))
        ));
        assert!(matches!(
            ConnectOptions::from_json(br#"{"verbose":"yes"}"#),
            Err(ProtoError::ConnectJson(_))
        ));
        assert!(matches!(
            ConnectOptions::from_json(br#"{"protocol":-1}"#),
            Err(ProtoError::ConnectJson(_))
        ));
    }

    #[test]
    fn validate_rules() {
        let mut o = ConnectOptions::from_json(br#"{"protocol":2}"#).unwrap();
        assert_eq!(o.validate(true), Err(ProtoError::BadClientProtocol));
        o.protocol = 1;
        o.no_responders = true;
        assert_eq!(
            o.validate(true),
            Err(ProtoError::NoRespondersRequiresHeaders)
        );
        o.headers = true;
        assert!(o.validate(true).is_ok());
        assert_eq!(
            o.validate(false),
            Err(ProtoError::NoRespondersRequiresHeaders)
        );
    }
}
