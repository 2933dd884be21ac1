//! A control-socket client: connect, hello, then one request at a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Envelope, Request, Response, PROTOCOL_VERSION};
use super::{ProtocolError, SupervisorError};

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
