//! Windows security descriptors as SDDL text: the owner-only descriptor the platform layer
//! puts on the home and the local API's pipe, and reading who else a file's DACL lets in.
//! Pure text, compiled and tested on every OS (the calls that apply them are in `win.rs`).

/// A protected DACL with one entry: full access for `me` (a SID), nothing inherited from
/// above; `inherit` passes the entry on to what is created inside a directory.
pub fn owner_only(me: &str, inherit: bool) -> String {
    let flags = if inherit { "OICI" } else { "" };
    format!("D:P(A;{flags};FA;;;{me})")
}

/// SDDL's names for SYSTEM, the Administrators group, the owner's rights and the creator
/// owner, and their SIDs: the system's own, which may reach every file anyway.
const SYSTEM_ACCOUNTS: &[&str] = &["SY", "BA", "OW", "CO", "S-1-5-18", "S-1-5-32-544", "S-1-3-4", "S-1-3-0"];

/// The trustees of a descriptor's allow entries other than `me` and the system's own
/// accounts, by name. No DACL at all lets everyone in.
pub fn others(sddl: &str, me: &str) -> Vec<String> {
    let Some(dacl) = sddl.split("D:").nth(1) else { return vec!["Everyone (no DACL)".into()] };
    let dacl = dacl.split("S:").next().unwrap_or(dacl);
    if dacl.starts_with("NO_ACCESS_CONTROL") {
        return vec!["Everyone (no DACL)".into()];
    }
    let mut out: Vec<String> = dacl
        .split('(')
        .skip(1)
        .filter_map(|ace| ace.split(')').next())
        .filter_map(|ace| {
            let f: Vec<&str> = ace.split(';').collect();
            // Allow entries only (A, and the object and callback kinds); a deny lets nobody in.
            (f.len() >= 6 && f[0].starts_with('A') || f.len() >= 6 && f[0].starts_with("XA")).then(|| f[5])
        })
        .filter(|t| *t != me && !SYSTEM_ACCOUNTS.contains(t))
        .map(trustee_name)
        .collect();
    out.dedup();
    out
}

/// A trustee as a person reads it: `Everyone`, `Users`, or the SID.
fn trustee_name(t: &str) -> String {
    match t {
        "WD" | "S-1-1-0" => "Everyone",
        "AU" | "S-1-5-11" => "Authenticated Users",
        "BU" | "S-1-5-32-545" => "Users",
        "BG" | "S-1-5-32-546" => "Guests",
        "IU" | "S-1-5-4" => "Interactive users",
        "AN" | "S-1-5-7" => "Anonymous",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    const ME: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";
    const OTHER: &str = "S-1-5-21-1004336348-1177238915-682003330-1002";

    #[test]
    fn the_owner_only_descriptor_names_only_its_owner_and_inherits_nothing() {
        assert_eq!(owner_only(ME, false), format!("D:P(A;;FA;;;{ME})"));
        assert_eq!(owner_only(ME, true), format!("D:P(A;OICI;FA;;;{ME})"));
        // What it makes reads back as private.
        assert!(others(&format!("O:{ME}{}", owner_only(ME, true)), ME).is_empty());
    }

    #[test]
    fn who_else_a_dacl_lets_in() {
        // A home folder as Windows makes it: SYSTEM, Administrators, the user — private.
        let home = format!("O:{ME}G:{ME}D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{ME})");
        assert!(others(&home, ME).is_empty(), "{:?}", others(&home, ME));
        // A folder everyone may use, another user's entry, and a deny entry (lets nobody in).
        let open = format!("O:{ME}D:AI(A;OICIID;FA;;;WD)(A;;0x1200a9;;;{OTHER})(D;;FA;;;BU)(A;;FA;;;{ME})");
        assert_eq!(others(&open, ME), vec!["Everyone".to_string(), OTHER.to_string()]);
        // No DACL at all: everyone.
        assert_eq!(others(&format!("O:{ME}"), ME), vec!["Everyone (no DACL)".to_string()]);
        assert_eq!(others(&format!("O:{ME}D:NO_ACCESS_CONTROL"), ME), vec!["Everyone (no DACL)".to_string()]);
        // A SACL after the DACL is not read as entries of it.
        assert!(others(&format!("D:P(A;;FA;;;{ME})S:(AU;SA;FA;;;WD)"), ME).is_empty());
    }
}
