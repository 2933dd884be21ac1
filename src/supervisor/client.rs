//! A control-socket client: connect, hello, then one request at a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Envelope, Request, Response, PROTOCOL_VERSION};
use super::{ProtocolError, SupervisorError};

/// Why a running sandbox's supervisor did not give what was asked of it.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("sandbox `{0}` is not running (start it with `nemoclaw start {0}`)")]
    NotRunning(String),
    #[error("sandbox `{name}`: {message}")]
    Refused { name: String, message: String },
    #[error("sandbox `{0}`")]
    Control(String, #[source] Box<SupervisorError>),
}

/// Sends `request` to the supervisor of the running sandbox `name`, waiting up to `wait` for
/// the answer (the client's default without), and takes what `pick` finds in the response; a
/// response without it is a refusal, with the supervisor's reason.
pub fn ask<T>(
    home: &crate::home::Home,
    name: &str,
    request: Request,
    wait: Option<Duration>,
    pick: impl FnOnce(&mut Response) -> Option<T>,
) -> Result<T, AskError> {
    if !super::is_running(home, name) {
        return Err(AskError::NotRunning(name.to_string()));
    }
    let control = |e| AskError::Control(name.to_string(), Box::new(e));
    let mut c = Client::connect(&home.control_socket(name)).map_err(control)?;
    if let Some(w) = wait {
        c.set_reply_timeout(w).map_err(control)?;
    }
    let mut r = c.request(request).map_err(control)?;
    pick(&mut r).ok_or_else(|| AskError::Refused {
        name: name.to_string(),
        message: r.error.unwrap_or_default(),
    })
}

pub struct Client {
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to `sock` and performs the version handshake.
    pub fn connect(sock: &Path) -> Result<Client, SupervisorError> {
        let stream = UnixStream::connect(sock).map_err(|e| sup_io(sock.to_path_buf(), e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| sup_io(sock.to_path_buf(), e))?;
        let mut c = Client {
            reader: BufReader::new(stream),
            next_id: 1,
        };
        let r = c.request(Request::Hello {
            version: PROTOCOL_VERSION,
            client: Some(format!("nemoclaw-cli/{}", crate::VERSION)),
        })?;
        if !r.ok {
            return Err(ProtocolError::Refused(r.error.unwrap_or_default()).into());
        }
        Ok(c)
    }

    /// How long [`Client::request`] waits for an answer (10 s from [`Client::connect`]).
    pub fn set_reply_timeout(&mut self, wait: Duration) -> Result<(), SupervisorError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .map_err(|e| sup_io("control socket", e))
    }

    pub fn request(&mut self, request: Request) -> Result<Response, SupervisorError> {
        let env = Envelope {
            id: serde_json::json!(self.next_id),
            request,
        };
        self.next_id += 1;
        let mut line = serde_json::to_vec(&env).map_err(ProtocolError::Encode)?;
        line.push(b'\n');
        let io = |e: std::io::Error| sup_io("control socket", e);
        self.reader.get_mut().write_all(&line).map_err(io)?;
        let mut resp = String::new();
        self.reader
            .read_line(&mut resp)
            .map_err(|e| sup_io("control socket", e))?;
        if resp.is_empty() {
            return Err(ProtocolError::Closed.into());
        }
        Ok(serde_json::from_str(&resp).map_err(ProtocolError::BadResponse)?)
    }
}

fn sup_io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> SupervisorError {
    SupervisorError::Io {
        path: path.into(),
        source,
    }
}
