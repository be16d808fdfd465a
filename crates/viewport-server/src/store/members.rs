//! Memberships, roles (SPEC A6) and the audit log.
//!
//! Every check of [`crate::roles`] runs inside the transaction that makes the change, so two
//! owners demoting each other at once cannot leave an org without one.

use super::sql::{p, Event, Tx};
use super::{Member, Result, Store, StoreError};
use crate::roles::{self, Actor, Cap, Role};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// The user's email, `cli:<os user>` or `machine:<name>`.
    pub actor: String,
    /// `org.created`, `member.added`, `member.removed`, `member.role_changed`,
    /// `machine.paired`, `machine.revoked`, `machine.renamed`, `code.minted`.
    pub action: String,
    /// Whom or what it was done to (an email, a machine's name and id).
    pub subject: String,
    pub detail: String,
}

pub(super) fn audit(tx: &Tx, workspace_id: &str, now: i64, actor: &Actor, action: &str, subject: &str, detail: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_log (workspace_id, at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        p![workspace_id, now, actor.label(), action, subject, detail],
    )?;
    Ok(())
}

/// A role as the `memberships.role` column holds it.
pub(super) fn stored_role(s: &str) -> Result<Role> {
    s.parse::<Role>().map_err(|m| StoreError::Conflict(format!("a stored role is not valid: {m}")))
}

pub(super) fn member_role(tx: &Tx, workspace_id: &str, user_id: &str) -> Result<Option<Role>> {
    let r: Option<String> =
        tx.query_opt("SELECT role FROM memberships WHERE workspace_id = ?1 AND user_id = ?2", p![workspace_id, user_id], |r| r.get(0))?;
    r.as_deref().map(stored_role).transpose()
}

/// `Forbidden` unless `actor` may do `cap` in this workspace. The admin CLI may do anything
/// (it holds the database file); a machine acts only on its own pairing, checked by the caller.
pub(super) fn require(tx: &Tx, workspace_id: &str, actor: &Actor, cap: Cap) -> Result<()> {
    let Actor::User { id, .. } = actor else { return Ok(()) };
    match member_role(tx, workspace_id, id)? {
        None => Err(StoreError::Forbidden("you are not a member of this workspace".into())),
        Some(role) if roles::may(role, cap) => Ok(()),
        Some(role) => Err(StoreError::Forbidden(format!("your role ({role}) may not {}", describe(cap)))),
    }
}

fn describe(cap: Cap) -> &'static str {
    roles::TABLE.iter().find(|(c, _, _)| *c == cap).map(|(_, what, _)| *what).unwrap_or("do this")
}

fn owner_count(tx: &Tx, workspace_id: &str) -> Result<i64> {
    tx.query_one("SELECT COUNT(*) FROM memberships WHERE workspace_id = ?1 AND role = 'owner'", p![workspace_id], |r| r.get(0))
}

pub(super) fn email_of(tx: &Tx, user_id: &str) -> Result<String> {
    Ok(tx.query_opt("SELECT email FROM users WHERE id = ?1", p![user_id], |r| r.get(0))?.unwrap_or_else(|| user_id.to_string()))
}

/// Inserts a membership. The first member of an org without an owner becomes its owner,
/// whatever `role` asks (an org always has one); anyone else gets `role`, or member. Returns
/// whether it was added and the role held.
pub(super) fn insert_member(tx: &Tx, workspace_id: &str, user_id: &str, role: Option<Role>, actor: &Actor, now: i64) -> Result<(bool, Role)> {
    if let Some(existing) = member_role(tx, workspace_id, user_id)? {
        return Ok((false, existing));
    }
    let role = if owner_count(tx, workspace_id)? == 0 { Role::Owner } else { role.unwrap_or(Role::Member) };
    require(tx, workspace_id, actor, roles::cap_for_add(role))?;
    put_member(tx, workspace_id, user_id, role, actor, now)?;
    Ok((true, role))
}

/// Inserts a membership without a permission check: for whoever creates the workspace.
pub(super) fn put_member(tx: &Tx, workspace_id: &str, user_id: &str, role: Role, actor: &Actor, now: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO memberships (workspace_id, user_id, created_at, role) VALUES (?1, ?2, ?3, ?4)",
        p![workspace_id, user_id, now, role.as_str()],
    )?;
    audit(tx, workspace_id, now, actor, "member.added", &email_of(tx, user_id)?, role.as_str())
}

impl Store {
    /// Adds a membership as the admin CLI would (the role by [`Store::add_member_as`]'s rule);
    /// `Ok(false)` when it already existed.
    pub fn add_member(&self, workspace_id: &str, user_id: &str, now: i64) -> Result<bool> {
        Ok(self.add_member_as(workspace_id, user_id, None, &Actor::cli(), now)?.0)
    }

    /// Adds `user_id` with `role` (`None`: owner when the org has none yet, else member), as
    /// `actor`. An existing member keeps their role: `(false, their role)`.
    pub fn add_member_as(&self, workspace_id: &str, user_id: &str, role: Option<Role>, actor: &Actor, now: i64) -> Result<(bool, Role)> {
        self.write(|tx| {
            let out = insert_member(tx, workspace_id, user_id, role, actor, now)?;
            Ok(out)
        })
    }

    /// Changes a member's role as `actor`; returns the role they had. The last owner cannot be
    /// demoted (`Conflict`).
    pub fn set_role(&self, workspace_id: &str, user_id: &str, role: Role, actor: &Actor, now: i64) -> Result<Role> {
        self.write(|tx| {
            let from =
                member_role(tx, workspace_id, user_id)?.ok_or_else(|| StoreError::NotFound("that user is not a member of this workspace".into()))?;
            let Some(cap) = roles::cap_for_role_change(from, role) else { return Ok(from) };
            require(tx, workspace_id, actor, cap)?;
            if from == Role::Owner && owner_count(tx, workspace_id)? <= 1 {
                return Err(StoreError::Conflict("this is the workspace's last owner; make another member owner first".into()));
            }
            tx.execute("UPDATE memberships SET role = ?3 WHERE workspace_id = ?1 AND user_id = ?2", p![workspace_id, user_id, role.as_str()])?;
            audit(tx, workspace_id, now, actor, "member.role_changed", &email_of(tx, user_id)?, &format!("{from} → {role}"))?;
            Ok(from)
        })
    }

    /// Removes a membership as the admin CLI would; see [`Store::remove_member_as`].
    pub fn remove_member(&self, workspace_id: &str, user_id: &str, now: i64) -> Result<usize> {
        self.remove_member_as(workspace_id, user_id, &Actor::cli(), now)
    }

    /// Removes a membership as `actor` and revokes every runtime target that user approved in
    /// that workspace (and only there). Returns how many pairings were revoked. The last owner
    /// cannot be removed (`Conflict`).
    pub fn remove_member_as(&self, workspace_id: &str, user_id: &str, actor: &Actor, now: i64) -> Result<usize> {
        self.write(|tx| {
            let role =
                member_role(tx, workspace_id, user_id)?.ok_or_else(|| StoreError::NotFound("that user is not a member of this workspace".into()))?;
            require(tx, workspace_id, actor, roles::cap_for_remove(role, actor.user_id() == Some(user_id)))?;
            if role == Role::Owner && owner_count(tx, workspace_id)? <= 1 {
                return Err(StoreError::Conflict("this is the workspace's last owner; make another member owner first".into()));
            }
            tx.execute("DELETE FROM memberships WHERE workspace_id = ?1 AND user_id = ?2", p![workspace_id, user_id])?;
            let revoked: Vec<(String, String, String)> = tx.query_map(
                "SELECT m.id, m.name, t.id FROM runtime_targets t JOIN machines m ON m.id = t.machine_id
             WHERE t.workspace_id = ?1 AND t.approved_by = ?2 AND t.revoked_at IS NULL",
                p![workspace_id, user_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            tx.execute(
                "UPDATE runtime_targets SET revoked_at = ?3, revoked_reason = 'member_removed'
             WHERE workspace_id = ?1 AND approved_by = ?2 AND revoked_at IS NULL",
                p![workspace_id, user_id, now],
            )?;
            // Codes the removed member minted there can no longer be claimed.
            tx.execute(
                "UPDATE pairing_codes SET state = 'consumed', decided_at = ?3
             WHERE workspace_id = ?1 AND approved_by = ?2 AND state IN ('pending', 'approved')",
                p![workspace_id, user_id, now],
            )?;
            let email = email_of(tx, user_id)?;
            audit(tx, workspace_id, now, actor, "member.removed", &email, &format!("was {role}; {} machine(s) revoked", revoked.len()))?;
            for (id, name, _) in &revoked {
                audit(tx, workspace_id, now, actor, "machine.revoked", &format!("{name} ({id})"), &format!("member removed: {email}"))?;
            }
            if !revoked.is_empty() {
                tx.publish(Event::Revoked { ids: revoked.iter().map(|(_, _, t)| t.clone()).collect() });
            }
            Ok(revoked.len())
        })
    }

    pub fn members(&self, workspace_id: &str) -> Result<Vec<Member>> {
        let rows = self.read(|tx| {
            tx.query_map(
                "SELECT u.id, u.email, m.created_at, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.workspace_id = ?1
                 ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, u.email",
                p![workspace_id],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?, r.get::<String>(3)?)),
            )
        })?;
        rows.into_iter().map(|(user_id, email, joined_at, role)| Ok(Member { user_id, email, role: stored_role(&role)?, joined_at })).collect()
    }

    /// The role of `user_id` in the workspace; `None` for a non-member.
    pub fn role_of(&self, workspace_id: &str, user_id: &str) -> Result<Option<Role>> {
        self.read(|tx| member_role(tx, workspace_id, user_id))
    }

    /// The workspace's audit log, newest first, at most `limit` entries.
    pub fn audit_log(&self, workspace_id: &str, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(|tx| {
            tx.query_map(
                "SELECT id, at, actor, action, subject, detail FROM audit_log WHERE workspace_id = ?1
                 ORDER BY id DESC LIMIT ?2",
                p![workspace_id, limit as i64],
                |r| Ok(AuditEntry { id: r.get(0)?, at: r.get(1)?, actor: r.get(2)?, action: r.get(3)?, subject: r.get(4)?, detail: r.get(5)? }),
            )
        })
    }
}
