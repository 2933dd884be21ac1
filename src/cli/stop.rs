//! `nemoclaw stop NAME`: SIGTERM to the agent, SIGKILL after `lifecycle.stopTimeout`, tear the
//! sandbox down (cgroups, mounts, namespaces go with its processes) and end the supervisor.
//! State, logs and the deployed blueprint are kept.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use super::{Context, Exit};
use crate::blueprint::types::defaults;
use crate::supervisor::{self, client::Client, daemon, protocol::Request};

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// The sandbox name.
    pub name: String,
    /// Override the blueprint's lifecycle.stopTimeout.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

pub fn run(a: StopArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let home = ctx.home()?;
    let name = a.name.as_str();
    if !supervisor::is_running(&home, name) {
        daemon::clean_leftovers(&home, name)?;
        if !ctx.quiet {
            println!("sandbox `{name}` is not running");
        }
        return Ok(Exit::Ok);
    }
    let stop_timeout = a.timeout.unwrap_or_else(|| {
        crate::blueprint::set::load_one(&daemon::deployed_blueprint(&home, name))
            .ok()
            .and_then(|e| e.blueprint.lifecycle.stop_timeout.map(|d| d.as_duration()))
            .unwrap_or(defaults::STOP_TIMEOUT)
    });
    let asked = Client::connect(&supervisor::control_socket(&home, name)).and_then(|mut c| {
        c.request(Request::Stop {
            timeout_ms: Some(stop_timeout.as_millis() as u64),
        })
    });
    let pid_file = home.run_dir(name).join("supervisor.pid");
    let deadline = Instant::now() + stop_timeout + Duration::from_secs(10);
    while supervisor::is_running(&home, name) {
        if Instant::now() > deadline || asked.is_err() {
            // The lock is held, so the pid in the file is the live supervisor, not a reused pid.
            let (holder, _) = crate::home::read_holder(&pid_file);
            if let Ok(pid) = holder.parse::<i32>() {
                if supervisor::is_running(&home, name) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            if supervisor::is_running(&home, name) {
                bail!("sandbox `{name}`: the supervisor (pid {holder}) does not stop");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon::clean_leftovers(&home, name)?;
    if !ctx.quiet {
        println!("stopped `{name}` (state and logs kept)");
    }
    Ok(Exit::Ok)
}
