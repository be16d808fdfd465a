//! Roles in a workspace and what each may do (SPEC amendment A6): the one permission table.
//!
//! Pure policy, no I/O. The store enforces it inside the transaction that makes the change (so
//! "the last owner stays" cannot be raced), the pages use it to decide which buttons to show,
//! and `docs/ROLES.md` carries the same table ([`markdown_table`]; a test compares them).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!("{other:?} is not a role; use owner, admin or member")),
        }
    }
}

/// One line of the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Approve a pairing request of one's own machine (the `/pair` page).
    ApproveOwnPairing,
    /// Make an "Add machine" code; the machine that claims it is paired as oneself.
    MintOwnCode,
    /// See the workspace's machines and sessions.
    ViewMachinesAndSessions,
    /// Revoke a machine one paired.
    RevokeOwnMachine,
    /// Leave the workspace (remove oneself).
    Leave,
    /// Revoke any machine of the workspace.
    RevokeAnyMachine,
    /// Add and remove members and admins; change a role between member and admin.
    ManageMembers,
    /// Read the audit log.
    ViewAudit,
    /// Grant, change or remove the owner role (add an owner, remove an owner, demote one).
    ManageOwners,
}

/// The permission table: each capability and the roles that hold it.
pub const TABLE: &[(Cap, &str, &[Role])] = &[
    (Cap::ApproveOwnPairing, "approve pairings of their own machines", &[Role::Member, Role::Admin, Role::Owner]),
    (Cap::MintOwnCode, "mint pairing codes for themselves (Add machine)", &[Role::Member, Role::Admin, Role::Owner]),
    (Cap::ViewMachinesAndSessions, "see the org's machines and sessions", &[Role::Member, Role::Admin, Role::Owner]),
    (Cap::RevokeOwnMachine, "revoke their own machines", &[Role::Member, Role::Admin, Role::Owner]),
    (Cap::Leave, "leave the org (except its last owner)", &[Role::Member, Role::Admin, Role::Owner]),
    (Cap::RevokeAnyMachine, "revoke any machine", &[Role::Admin, Role::Owner]),
    (Cap::ManageMembers, "add and remove members and admins, change a role between member and admin", &[Role::Admin, Role::Owner]),
    (Cap::ViewAudit, "read the audit log", &[Role::Admin, Role::Owner]),
    (Cap::ManageOwners, "grant, change or remove the owner role", &[Role::Owner]),
];

pub fn may(role: Role, cap: Cap) -> bool {
    TABLE.iter().any(|(c, _, roles)| *c == cap && roles.contains(&role))
}

/// What a membership change needs: `None` for no change at all.
pub fn cap_for_role_change(from: Role, to: Role) -> Option<Cap> {
    if from == to {
        None
    } else if from == Role::Owner || to == Role::Owner {
        Some(Cap::ManageOwners)
    } else {
        Some(Cap::ManageMembers)
    }
}

/// What adding someone with `role` needs.
pub fn cap_for_add(role: Role) -> Cap {
    if role == Role::Owner {
        Cap::ManageOwners
    } else {
        Cap::ManageMembers
    }
}

/// What removing a member whose role is `target` needs (`is_self`: they remove themselves).
pub fn cap_for_remove(target: Role, is_self: bool) -> Cap {
    if is_self {
        Cap::Leave
    } else if target == Role::Owner {
        Cap::ManageOwners
    } else {
        Cap::ManageMembers
    }
}

/// What revoking a machine needs (`own`: the actor paired it).
pub fn cap_for_revoke(own: bool) -> Cap {
    if own {
        Cap::RevokeOwnMachine
    } else {
        Cap::RevokeAnyMachine
    }
}

/// Who did something: a signed-in user, the admin CLI (as the OS user that ran it), or a
/// machine acting on its own pairing (the daemon unpairing, claiming a code, or cancelling
/// before delivery), named by its machine id — never by a name the daemon chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User { id: String, email: String },
    Cli { os_user: String },
    Machine { id: String },
}

impl Actor {
    /// The admin CLI as the OS user running this process.
    pub fn cli() -> Actor {
        Actor::Cli { os_user: crate::util::os_user_name() }
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Actor::User { id, .. } => Some(id),
            _ => None,
        }
    }

    /// How the audit log names the actor: the user's email, `cli:<os user>`, `machine:<id>`.
    pub fn label(&self) -> String {
        match self {
            Actor::User { email, .. } => email.clone(),
            Actor::Cli { os_user } => format!("cli:{os_user}"),
            Actor::Machine { id } => format!("machine:{id}"),
        }
    }
}

/// The table as Markdown, exactly as `docs/ROLES.md` holds it.
pub fn markdown_table() -> String {
    let mut s = String::from("| A person with this role may … | member | admin | owner |\n|---|---|---|---|\n");
    for (_, what, roles) in TABLE {
        let mark = |r: Role| if roles.contains(&r) { "yes" } else { "—" };
        s.push_str(&format!("| {what} | {} | {} | {} |\n", mark(Role::Member), mark(Role::Admin), mark(Role::Owner)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_as_amendment_a6_words_it() {
        use Cap::*;
        use Role::*;
        let expect: &[(Cap, [bool; 3])] = &[
            // (cap, [member, admin, owner])
            (ApproveOwnPairing, [true, true, true]),
            (MintOwnCode, [true, true, true]),
            (ViewMachinesAndSessions, [true, true, true]),
            (RevokeOwnMachine, [true, true, true]),
            (Leave, [true, true, true]),
            (RevokeAnyMachine, [false, true, true]),
            (ManageMembers, [false, true, true]),
            (ViewAudit, [false, true, true]),
            (ManageOwners, [false, false, true]),
        ];
        assert_eq!(expect.len(), TABLE.len());
        for (cap, want) in expect {
            assert_eq!([may(Member, *cap), may(Admin, *cap), may(Owner, *cap)], *want, "{cap:?}");
        }
    }

    #[test]
    fn which_capability_a_change_needs() {
        use Role::*;
        assert_eq!(cap_for_role_change(Member, Admin), Some(Cap::ManageMembers));
        assert_eq!(cap_for_role_change(Admin, Member), Some(Cap::ManageMembers));
        assert_eq!(cap_for_role_change(Admin, Owner), Some(Cap::ManageOwners));
        assert_eq!(cap_for_role_change(Owner, Admin), Some(Cap::ManageOwners));
        assert_eq!(cap_for_role_change(Owner, Owner), None);
        assert_eq!(cap_for_add(Owner), Cap::ManageOwners);
        assert_eq!(cap_for_add(Admin), Cap::ManageMembers);
        assert_eq!(cap_for_remove(Owner, false), Cap::ManageOwners);
        assert_eq!(cap_for_remove(Member, false), Cap::ManageMembers);
        assert_eq!(cap_for_remove(Owner, true), Cap::Leave);
        assert_eq!(cap_for_revoke(true), Cap::RevokeOwnMachine);
        assert_eq!(cap_for_revoke(false), Cap::RevokeAnyMachine);
        assert_eq!("admin".parse::<Role>(), Ok(Admin));
        assert!("root".parse::<Role>().unwrap_err().contains("owner, admin or member"));
    }

    #[test]
    fn docs_hold_the_same_table() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ROLES.md")).expect("docs/ROLES.md");
        assert!(doc.contains(&markdown_table()), "docs/ROLES.md must contain exactly this table:\n{}", markdown_table());
    }
}
