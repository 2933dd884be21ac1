//! One start of an agent: its plugin as deployed, its install checked, its templates
//! rendered ([`super::launch`]), and its files written into the state directory through the
//! confined state root (no symlink the agent planted is ever followed by the root-owned
//! supervisor), owned by the agent.

use std::io::Read;
use std::path::Path;

use crate::blueprint::plugin::Replace;
use crate::blueprint::types::Blueprint;
use crate::home::{write_atomic, Home, HomeError};
use crate::migrate::confine::{ConfineError, StateRoot};

use super::install::{self, InstallError, InstallState};
use super::launch::{self, Inputs, LaunchError, Prepared};
use super::registry::{self, Origin, Plugin, RegistryError, Search};
use super::render::RenderedFile;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("{what} is not installed: `nemoclaw apply` or `nemoclaw start` installs it")]
    NotInstalled { what: String },
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("cannot write {path} into the state directory")]
    File {
        path: String,
        #[source]
        source: ConfineError,
    },
    #[error(transparent)]
    Home(#[from] HomeError),
}

/// The plugin a deployed sandbox runs: the copy saved at deploy time (`run/<name>/plugin/`),
/// else the one of that name in the home or built in.
pub fn deployed(home: &Home, name: &str, bp: &Blueprint) -> Result<Plugin, StartError> {
    let dir = home.deployed_plugin(name, agent_type(bp));
    if dir.join(crate::blueprint::plugin::MANIFEST).is_file() {
        return Ok(registry::load_dir(&dir, Origin::Deployed(dir.clone()))?);
    }
    let home_plugins = home.plugins();
    let search = Search {
        source_dir: None,
        home_plugins: Some(&home_plugins),
    };
    Ok(registry::find(agent_type(bp), &search)?)
}

/// Saves `plugin` as the deployed copy of sandbox `name` (`run/<name>/plugins/<type>/`), the
/// only plugin there; a no-op when `plugin` is that copy.
pub fn save_deployed(home: &Home, name: &str, plugin: &Plugin) -> Result<(), StartError> {
    let dir = home.deployed_plugin(name, &plugin.manifest.metadata.name);
    if plugin.origin == Origin::Deployed(dir.clone()) {
        return Ok(());
    }
    let all = home.deployed_plugins(name);
    if let Err(source) = std::fs::remove_dir_all(&all) {
        if source.kind() != std::io::ErrorKind::NotFound {
            return Err(HomeError::Io { path: all, source }.into());
        }
    }
    Ok(registry::save(plugin, &dir)?)
}

/// The plugin a blueprint names, looked up in `source_dir`'s `plugins/` (the blueprint's
/// directory), the home's, then the built-in ones.
pub fn resolve(
    home: &Home,
    bp: &Blueprint,
    source_dir: Option<&Path>,
) -> Result<Plugin, StartError> {
    let home_plugins = home.plugins();
    let search = Search {
        source_dir,
        home_plugins: Some(&home_plugins),
    };
    Ok(registry::find(agent_type(bp), &search)?)
}

/// Installs the plugin's agent if it is not (`progress` gets the setup's output), then renders
/// it for `bp`.
pub fn install_and_prepare(
    home: &Home,
    bp: &Blueprint,
    plugin: &Plugin,
    progress: &mut dyn FnMut(&str),
) -> Result<Prepared, StartError> {
    let version = install::version_of(bp, &plugin.manifest);
    install::ensure(home, &plugin.manifest, &version, progress)?;
    prepare(home, bp, plugin, None)
}

/// The blueprint's agent type. Loading fills in the default where the blueprint has neither a
/// type nor a command, so only `type` or `command` decide here.
pub fn agent_type(bp: &Blueprint) -> &str {
    bp.agent.type_or(crate::blueprint::defaults::AGENT_TYPE)
}

/// Renders `plugin` for `bp`, whose install must be in place.
pub fn prepare(
    home: &Home,
    bp: &Blueprint,
    plugin: &Plugin,
    writable_install: Option<&Path>,
) -> Result<Prepared, StartError> {
    let m = &plugin.manifest;
    let version = install::version_of(bp, m);
    let dir = match install::state(home, m, &version)? {
        InstallState::NotNeeded => None,
        InstallState::Installed(d) => Some(d),
        InstallState::Needed { .. } => {
            return Err(StartError::NotInstalled {
                what: install::describe(m, &version),
            })
        }
    };
    let name = bp.metadata.name.as_str();
    let token = token(home, name)?;
    let inputs = Inputs {
        install: dir.as_ref(),
        version: &version,
        token: &token,
    };
    let mut prepared = launch::prepare(bp, m, &plugin.files, inputs)?;
    if let Some(w) = writable_install {
        prepared.launch.install = Some(w.to_path_buf());
        prepared.launch.install_writable = true;
    }
    Ok(prepared)
}

/// The sandbox's own token, made on first use (32 random bytes, hex).
pub fn token(home: &Home, name: &str) -> Result<String, HomeError> {
    let path = home.agent_token(name);
    if let Ok(t) = std::fs::read_to_string(&path) {
        if t.len() == 64 {
            return Ok(t);
        }
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| HomeError::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    let t = crate::migrate::tree::hex(&bytes);
    crate::home::create_dir_private(&home.run_dir(name))?;
    write_atomic(&path, t.as_bytes(), 0o600)?;
    Ok(t)
}

/// Writes the rendered files into the state directory (owned by its owner, the agent).
pub fn write_files(state_dir: &Path, files: &[RenderedFile]) -> Result<(), StartError> {
    if files.is_empty() {
        return Ok(());
    }
    let err = |path: &str| {
        let path = path.to_string();
        move |source| StartError::File { path, source }
    };
    let root = StateRoot::open(state_dir).map_err(err("."))?;
    for f in files {
        if f.replace == Replace::IfMissing && root.exists(&f.path).map_err(err(&f.path))? {
            continue;
        }
        if let Some((parent, _)) = f.path.rsplit_once('/') {
            root.mkdir(parent).map_err(err(&f.path))?;
        }
        root.write(&f.path, f.contents.as_bytes())
            .map_err(err(&f.path))?;
    }
    root.sync().map_err(err("."))
}
