//! `vpd update`'s source (issue 13 item 5, docs/RELEASES.md): `GET /api/releases/latest?os=&arch=`
//! answers the release manifest of the newest published release for that platform, and the
//! manifest's relative `url` downloads its file. Nothing here is trusted by the machine: the
//! manifest's `signature` was made offline by the release manager, and vpd checks it with the
//! key its user chose.

use super::ApiErr;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vpd_core::release::{Manifest, MANIFEST_FORMAT};

#[derive(serde::Deserialize)]
pub struct Platform {
    os: String,
    arch: String,
}

fn word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub async fn latest(State(state): State<AppState>, Query(p): Query<Platform>) -> Result<Response, ApiErr> {
    if !word(&p.os) || !word(&p.arch) {
        return Err(ApiErr::bad_request("os and arch are lowercase words, as Rust names them (linux, macos, windows; x86_64, aarch64)"));
    }
    let (os, arch) = (p.os.clone(), p.arch.clone());
    let Some(r) = state.db(move |s| s.latest_release(&os, &arch)).await? else {
        return Err(ApiErr::new(StatusCode::NOT_FOUND, "no_release", format!("no release is published for {} {}", p.os, p.arch)));
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        url: format!("{}/{}/{}/{}", r.version, r.os, r.arch, r.file_name),
        version: r.version,
        os: r.os,
        arch: r.arch,
        signature: r.signature,
    };
    Ok(([(header::CACHE_CONTROL, "no-cache")], Json(manifest)).into_response())
}

pub async fn file(
    State(state): State<AppState>,
    Path((version, os, arch, file)): Path<(String, String, String, String)>,
) -> Result<Response, ApiErr> {
    let Some(bytes) = state.db(move |s| s.release_file(&os, &arch, &version, &file)).await? else {
        return Err(ApiErr::new(StatusCode::NOT_FOUND, "no_release", "no such release file"));
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
