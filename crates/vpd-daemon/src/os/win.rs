//! Windows calls the platform layer shares: the user of a process (its token's SID), a
//! file's owner and who else its DACL lets in, and an owner-only protected DACL.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, ERROR_SUCCESS, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    PSID, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION};

/// `s` as a NUL-terminated UTF-16 string.
pub fn wide(s: impl AsRef<std::ffi::OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(Some(0)).collect()
}

fn from_wide(p: *const u16) -> String {
    // SAFETY: `p` is a NUL-terminated string the system allocated.
    unsafe {
        let mut n = 0;
        while *p.add(n) != 0 {
            n += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, n))
    }
}

fn sid_string(sid: PSID) -> io::Result<String> {
    let mut s: *mut u16 = std::ptr::null_mut();
    // SAFETY: a valid SID in; the string out is freed with LocalFree.
    unsafe {
        if ConvertSidToStringSidW(sid, &mut s) == 0 {
            return Err(io::Error::last_os_error());
        }
        let out = from_wide(s);
        LocalFree(s.cast());
        Ok(out)
    }
}

/// The SID of the user process `pid` runs as.
pub fn process_user(pid: u32) -> io::Result<String> {
    // SAFETY: handles opened here are closed here; the buffer outlives its use.
    unsafe {
        let process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if process.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut token: HANDLE = std::ptr::null_mut();
        let opened = OpenProcessToken(process, TOKEN_QUERY, &mut token);
        CloseHandle(process);
        if opened == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len = 0u32;
        GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len);
        let mut buf = vec![0u8; len as usize];
        let ok = GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len);
        CloseHandle(token);
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let user = &*(buf.as_ptr() as *const TOKEN_USER);
        sid_string(user.User.Sid)
    }
}

/// A file's owner and its DACL, as SDDL (`O:…D:P(A;;FA;;;S-1-5-21-…)`).
pub struct FileSecurity {
    pub owner: String,
    pub sddl: String,
}

impl FileSecurity {
    /// The trustees of the DACL's allow entries other than `me` and the system's own
    /// accounts, by name.
    pub fn others(&self, me: &str) -> Vec<String> {
        super::sddl::others(&self.sddl, me)
    }
}

pub fn file_security(path: &Path) -> io::Result<FileSecurity> {
    let name = wide(path);
    let mut owner: PSID = std::ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: pointers into `sd`, which is freed with LocalFree after use.
    unsafe {
        let r = GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        );
        if r != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(r as i32));
        }
        let owner_s = sid_string(owner);
        let mut text: *mut u16 = std::ptr::null_mut();
        let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut text,
            std::ptr::null_mut(),
        );
        LocalFree(sd);
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let sddl = from_wide(text);
        LocalFree(text.cast());
        Ok(FileSecurity { owner: owner_s?, sddl })
    }
}

/// An owner-only protected security descriptor (full access for `me`, nobody else, nothing
/// inherited from above; `inherit` passes it on to what is created inside a directory), as
/// attributes for a create call. Freed on drop.
pub struct OwnerOnly {
    sd: PSECURITY_DESCRIPTOR,
    pub attributes: SECURITY_ATTRIBUTES,
}

impl OwnerOnly {
    pub fn new(me: &str, inherit: bool) -> io::Result<OwnerOnly> {
        let sddl = wide(super::sddl::owner_only(me, inherit));
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: the descriptor is allocated by the call and freed on drop.
        if unsafe { ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.as_ptr(), SDDL_REVISION_1, &mut sd, std::ptr::null_mut()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let attributes =
            SECURITY_ATTRIBUTES { nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32, lpSecurityDescriptor: sd, bInheritHandle: 0 };
        Ok(OwnerOnly { sd, attributes })
    }

    /// Puts this DACL on an existing file or directory, replacing what it had (and cutting
    /// what it inherited).
    pub fn apply(&self, path: &Path) -> io::Result<()> {
        use windows_sys::Win32::Security::SetFileSecurityW;
        let name = wide(path);
        // SAFETY: a valid descriptor and path.
        if unsafe { SetFileSecurityW(name.as_ptr(), DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION, self.sd) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

// SAFETY: the descriptor is memory this value owns, only read after it is made; moving it to
// another thread (the local API's accept loop runs on any) changes nothing.
unsafe impl Send for OwnerOnly {}
unsafe impl Sync for OwnerOnly {}

impl Drop for OwnerOnly {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.sd) };
    }
}
