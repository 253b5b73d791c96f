//! Node hooks: what the agent runs to add a machine (the cluster saturates) or remove one
//! (a drained node leaves), as `config.json`'s `Nodes` section names it.
//!
//! A hook is an exec command or a webhook. Each attempt has the hook's `Timeout`: a command
//! still running at it is killed (the child is spawned with `kill_on_drop`, and the attempt
//! future is dropped at the deadline), a request still unanswered is dropped. A failed
//! attempt is retried `Retries` times, one second apart. A run happens in its own task
//! ([`spawn`]), so a hook that hangs never holds the autonomic loop; when it ends, its
//! result goes to the action history (`events`, `GET /gru/v1/actions`) and to telemetry
//! (`gru_action`, `gru_actions_total`) as action `add-node` or `remove-node`.
//!
//! The command gets `GRU_CLUSTER`, `GRU_HOOK` (`add-node` | `remove-node`), `GRU_REASON`,
//! `GRU_WANTED` (instances the cluster wants and cannot place, for add-node) and, for
//! remove-node, `GRU_NODE`. The webhook gets the same as a JSON body
//! (`{"cluster","hook","reason","wanted","node"}`) with `X-Gru-Signature: sha256=<hex>`,
//! HMAC-SHA256 of the body under the cluster secret, as the gossip wire signs.

use std::sync::Arc;
use std::time::Duration;

use common::config::hooks::{HookConfig, HookTarget};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::autonomic::now;
use super::state::{ActionRecord, Shared};

/// Between a failed attempt and the next.
pub const HOOK_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Most bytes of a command's output or an answer's body kept in the result.
const OUTPUT_KEPT_BYTES: usize = 200;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    AddNode,
    RemoveNode,
}

impl HookKind {
    pub fn label(self) -> &'static str {
        match self {
            HookKind::AddNode => "add-node",
            HookKind::RemoveNode => "remove-node",
        }
    }
}

/// What a hook is called with: its webhook body, and its command's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookCall {
    pub cluster: String,
    pub hook: HookKind,
    pub reason: String,
    pub wanted: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl HookCall {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("GRU_CLUSTER", self.cluster.clone()),
            ("GRU_HOOK", self.hook.label().to_owned()),
            ("GRU_REASON", self.reason.clone()),
            ("GRU_WANTED", self.wanted.to_string()),
        ];
        if let Some(node) = &self.node {
            env.push(("GRU_NODE", node.clone()));
        }
        env
    }
}

/// How a run went: every attempt's failure, and the last attempt's success if there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub attempts: u32,
    pub failures: Vec<String>,
    /// What the successful attempt said (exit status and output, or the HTTP status).
    pub succeeded: Option<String>,
}

impl HookRun {
    /// The action record's result: `ok: ...` or `failed: ...`, with the attempts.
    pub fn result(&self) -> String {
        match &self.succeeded {
            Some(said) => format!(
                "ok: {said} (attempt {} of {})",
                self.attempts, self.attempts
            ),
            None => format!(
                "failed: {} attempt(s): {}",
                self.attempts,
                self.failures.join("; ")
            ),
        }
    }
}

/// Runs `hook` for `call` until one attempt succeeds or `1 + Retries` attempts failed.
pub async fn run(hook: &HookConfig, call: &HookCall, secret: &str) -> HookRun {
    let timeout = Duration::from_secs(hook.timeout_secs.max(1));
    let mut run = HookRun {
        attempts: 0,
        failures: Vec::new(),
        succeeded: None,
    };
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            tokio::time::sleep(HOOK_RETRY_DELAY).await;
        }
        run.attempts += 1;
        let once = async {
            match hook.target() {
                Some(HookTarget::Exec(command)) => exec(command, call).await,
                Some(HookTarget::Webhook(url)) => post(url, call, secret).await,
                None => Err("the hook names neither a command nor a url".to_owned()),
            }
        };
        match tokio::time::timeout(timeout, once).await {
            Ok(Ok(said)) => {
                run.succeeded = Some(said);
                return run;
            }
            Ok(Err(why)) => run.failures.push(why),
            Err(_) => run.failures.push(format!(
                "timed out after {} s{}",
                timeout.as_secs(),
                if matches!(hook.target(), Some(HookTarget::Exec(_))) {
                    " (killed)"
                } else {
                    ""
                }
            )),
        }
    }
    run
}

/// Runs `hook` in its own task and records its result when it ends.
pub fn spawn(shared: Arc<Shared>, hook: HookConfig, call: HookCall) -> JoinHandle<HookRun> {
    tokio::spawn(async move {
        tracing::info!(hook = call.hook.label(), reason = %call.reason, wanted = call.wanted,
            node = call.node.as_deref().unwrap_or(""), "calling node hook");
        let key = shared.signing_key(crate::runtime::autonomic::now());
        let run = run(&hook, &call, &key).await;
        let result = run.result();
        if run.succeeded.is_some() {
            tracing::info!(hook = call.hook.label(), %result, "node hook done");
        } else {
            tracing::warn!(hook = call.hook.label(), %result, "node hook failed");
        }
        record(&shared, &call, result);
        run
    })
}

/// The run in `events` and telemetry: action `add-node` | `remove-node`, the node it
/// concerns in the instance column.
fn record(shared: &Shared, call: &HookCall, result: String) {
    let at = now();
    shared.telemetry.acted(call.hook.label(), "", &result, at);
    shared.knowledge().record_action(ActionRecord {
        at,
        action: call.hook.label().to_owned(),
        service: String::new(),
        instance: call.node.clone(),
        result,
        reason: Some(call.reason.clone()),
    });
}

async fn exec(command: &[String], call: &HookCall) -> Result<String, String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| "empty command".to_owned())?;
    let output = tokio::process::Command::new(program)
        .args(args)
        .envs(call.env())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    let said = kept(&output.stdout, &output.stderr);
    if output.status.success() {
        Ok(format!("exit 0{said}"))
    } else {
        Err(format!("{program}: {}{said}", output.status))
    }
}

async fn post(url: &str, call: &HookCall, secret: &str) -> Result<String, String> {
    let body = serde_json::to_vec(call).map_err(|err| err.to_string())?;
    let signature = signature(secret, &body);
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("x-gru-signature", format!("sha256={signature}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| format!("bad url {url}: {err}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(request)
        .await
        .map_err(|err| format!("POST {url}: {err}"))?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let said = kept(&answer, &[]);
    if status.is_success() {
        Ok(format!("HTTP {status}{said}"))
    } else {
        Err(format!("POST {url}: HTTP {status}{said}"))
    }
}

/// HMAC-SHA256 of `body` under the cluster secret, in hex: what `X-Gru-Signature` carries.
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `: <output>` trimmed to [`OUTPUT_KEPT_BYTES`], or nothing when there is none.
fn kept(stdout: &[u8], stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stdout.iter().all(u8::is_ascii_whitespace) {
        stderr
    } else {
        stdout
    })
    .trim()
    .to_owned();
    if text.is_empty() {
        return String::new();
    }
    let mut end = text.len().min(OUTPUT_KEPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(": {}", &text[..end])
}
