//! What an agent sees of the inference gateway: the name it answers to inside the sandbox, the
//! placeholder key the agent holds, and the environment that points SDKs at them. The gateway
//! serves that name and ignores that key; the sandbox spec puts the environment in.

/// The host name the agent uses; the sandbox network routes it to the inference router.
pub const INFERENCE_HOST: &str = "inference.local";
/// The key the agent holds. It means nothing outside the gateway, which ignores it and sends
/// the real key upstream.
pub const PLACEHOLDER_KEY: &str = "nemoclaw-placeholder-key";
/// The variable that holds the placeholder key for OpenAI-style SDKs.
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";

/// The environment an agent gets for inference: the OpenAI variables always, the Anthropic ones
/// when the blueprint has a backend of that kind (`anthropic`).
pub fn agent_env(anthropic: bool) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "OPENAI_BASE_URL".to_string(),
            format!("http://{INFERENCE_HOST}/v1"),
        ),
        (OPENAI_KEY_ENV.to_string(), PLACEHOLDER_KEY.to_string()),
    ];
    if anthropic {
        env.push((
            "ANTHROPIC_BASE_URL".to_string(),
            format!("http://{INFERENCE_HOST}"),
        ));
        env.push(("ANTHROPIC_API_KEY".to_string(), PLACEHOLDER_KEY.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_variables_only_with_an_anthropic_backend() {
        let openai = agent_env(false);
        assert!(openai.contains(&("OPENAI_BASE_URL".into(), "http://inference.local/v1".into())));
        assert!(openai.contains(&("OPENAI_API_KEY".into(), PLACEHOLDER_KEY.into())));
        assert!(!openai.iter().any(|(k, _)| k.starts_with("ANTHROPIC_")));
        let both = agent_env(true);
        assert!(both.contains(&("ANTHROPIC_BASE_URL".into(), "http://inference.local".into())));
        assert!(both.contains(&("ANTHROPIC_API_KEY".into(), PLACEHOLDER_KEY.into())));
    }
}
