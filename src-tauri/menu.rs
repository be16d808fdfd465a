//! The tray menu (SPEC section 12) as data: built from the status model, compared to the
//! last one, and only then turned into a Tauri menu. Pure: no I/O.

use vpd_daemon::states::{Health, LinkHealth};
use vpd_daemon::status::StatusReport;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuModel {
    pub status_line: String,
    /// The icon.
    pub health: Health,
    pub pairings: Vec<PairingEntry>,
    pub start_at_login: bool,
    /// A pairing that runs (issue 11 item 7: its code, reopen, cancel in the menu).
    pub pairing: Option<PairingWait>,
    /// Directory bindings that wait for a pairing (SPEC A3), one line per org and server.
    pub waiting: Vec<String>,
    /// A newer release the trusted update source offers (issue 13): "Update to vpd X".
    pub update: Option<String>,
    /// An update is being installed.
    pub updating: bool,
    /// `vpd` ships beside the tray but the shell does not find it: offer to link it.
    pub install_cli: bool,
}

/// A running pairing as the menu shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingWait {
    /// The code to check on the approval page, once the platform gave one.
    pub code: Option<String>,
    /// The approval page.
    pub url: Option<String>,
    /// Approved for an org already paired: the window asks whether to replace it.
    pub confirm: bool,
}

impl PairingWait {
    pub fn from_view(v: &vpd_daemon::pair_job::PairView) -> Option<Self> {
        v.running.then(|| PairingWait {
            code: v.code.clone(),
            url: v.url.clone(),
            confirm: v.state == vpd_daemon::states::PairJobState::ConfirmReplace,
        })
    }

    /// The menu's disabled line for it.
    pub fn line(&self) -> String {
        match (&self.code, self.confirm) {
            (_, true) => "Pairing: approved — confirm in the window".to_string(),
            (Some(code), false) => format!("Pairing: code {code} (approve in the browser)"),
            (None, false) => "Pairing: asking the platform for a code…".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingEntry {
    /// The local pairing id (SPEC A1: the same org on two servers is two entries).
    pub id: String,
    pub name: String,
    pub state: String,
    /// The org's page on its platform.
    pub url: String,
}

pub fn model(report: &StatusReport, start_at_login: bool, pairing: Option<PairingWait>) -> MenuModel {
    let health = vpd_daemon::status::health(report);
    let n = report.pairings.len();
    let connected = report.pairings.iter().filter(|p| p.state.health() == LinkHealth::Connected).count();
    let status_line = match (n, health) {
        (0, _) => "Viewport: not paired".to_string(),
        (_, Health::Connected) => format!("Viewport: connected ({n} org{})", if n == 1 { "" } else { "s" }),
        (_, Health::Offline) => "Viewport: offline".to_string(),
        _ => format!("Viewport: {connected} of {n} connected"),
    };
    let pairings = report
        .pairings
        .iter()
        .map(|p| PairingEntry {
            id: p.pairing_id.clone(),
            name: p.workspace_name.clone(),
            state: p.state.to_string(),
            url: format!(
                "{}/orgs/{}/sessions",
                p.server_url.trim_end_matches('/'),
                url::form_urlencoded::byte_serialize(p.workspace_slug.as_bytes()).collect::<String>()
            ),
        })
        .collect();
    MenuModel {
        status_line,
        health,
        pairings,
        start_at_login,
        pairing,
        waiting: waiting_lines(report),
        update: None,
        updating: false,
        install_cli: false,
    }
}

/// "2 folders wait for Acme Engineering on https://…" per org and server.
fn waiting_lines(report: &StatusReport) -> Vec<String> {
    let mut groups: Vec<(String, String, usize)> = Vec::new();
    for d in report.directories.iter().filter(|d| d.state == vpd_daemon::states::DirectoryState::Waiting) {
        let org = d.org_name.clone().unwrap_or_else(|| d.org_id.clone());
        let server = d.server.clone().unwrap_or_default();
        match groups.iter_mut().find(|g| g.0 == org && g.1 == server) {
            Some(g) => g.2 += 1,
            None => groups.push((org, server, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(org, server, n)| {
            let on = if server.is_empty() { String::new() } else { format!(" on {server}") };
            format!("{n} folder{} wait{} for {org}{on}", if n == 1 { "" } else { "s" }, if n == 1 { "s" } else { "" })
        })
        .collect()
}

/// The model when the daemon cannot be reached.
pub fn unreachable(start_at_login: bool) -> MenuModel {
    MenuModel {
        status_line: "Viewport: daemon not running".into(),
        health: Health::Offline,
        pairings: Vec::new(),
        start_at_login,
        pairing: None,
        waiting: Vec::new(),
        update: None,
        updating: false,
        install_cli: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(states: &[&str]) -> StatusReport {
        let pairings = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::from_value(serde_json::json!({
                    "workspaceId": format!("W{i}"), "workspaceName": format!("Org {i}"), "workspaceSlug": format!("org{i}"),
                    "serverUrl": "https://p.example/", "relayEndpoint": "wss://r", "machineId": "m", "machineName": "n",
                    "runtimeTargetId": "rt", "installId": "i", "pairedAt": "t", "state": s, "credentialStore": "file",
                    "insecureHttp": false, "lastError": null, "connectedSince": null, "nextRetryAt": null,
                    "sessionsStreaming": 0, "framesSent": 0, "framesAcked": 0, "queuedBytes": 0
                }))
                .unwrap()
            })
            .collect();
        serde_json::from_value::<StatusReport>(serde_json::json!({
            "daemon": {"running": true, "pid": 1, "version": "0", "machineName": "m", "home": "h", "startedAt": null,
                       "credentialStore": "file", "keyringError": null},
            "pairings": [], "directories": [], "problems": []
        }))
        .map(|mut r| {
            r.pairings = pairings;
            r
        })
        .unwrap()
    }

    #[test]
    fn worst_state_wins() {
        assert_eq!(model(&report(&[]), false, None).health, Health::Unpaired);
        assert_eq!(model(&report(&["connected", "connected"]), false, None).health, Health::Connected);
        assert_eq!(model(&report(&["connected", "reconnecting (1/5)"]), false, None).health, Health::Degraded);
        assert_eq!(model(&report(&["offline (next try 10:00)"]), false, None).health, Health::Offline);
        assert_eq!(model(&report(&["connecting"]), false, None).health, Health::Degraded);
        let m = model(&report(&["connected", "offline (next try 10:00)"]), true, None);
        assert_eq!(m.status_line, "Viewport: 1 of 2 connected");
        assert_eq!(m.pairings[0].url, "https://p.example/orgs/org0/sessions");
    }
}
