//! The pseudo-terminal `vpd run` runs a command under: its output as the terminal would get
//! it, keys to it, its window size, its exit code. A Unix pseudo-terminal (portable-pty) on
//! Linux and macOS; a pseudo console (ConPTY) of our own on Windows, because portable-pty's
//! always asks the hosting terminal for the cursor position (`PSEUDOCONSOLE_INHERIT_CURSOR`)
//! and holds the command until it is answered, which nothing answers when `vpd run` is not
//! in a console (docs/DECISIONS.md).

use std::io::{self, Read, Write};
use std::path::Path;

/// A command running under a pseudo-terminal of its own.
pub struct Pty(imp::Pty);

/// Changes the size of a [`Pty`]'s terminal, from any thread; nothing once the command ended.
#[derive(Clone)]
pub struct Resizer(imp::Resizer);

impl Pty {
    /// Runs `program` with `args` in `cwd`, on a terminal of `cols` × `rows`.
    pub fn spawn(program: &str, args: &[String], cwd: &Path, cols: u16, rows: u16) -> io::Result<Pty> {
        imp::Pty::spawn(program, args, cwd, cols.max(1), rows.max(1)).map(Pty)
    }

    /// What the command writes to its terminal (once; it ends after the command exited and
    /// [`Pty::wait`] returned).
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + Send>> {
        self.0.reader()
    }

    /// Keys to the command (once). Dropping it tells the command its input ended (the
    /// terminal's end-of-file character), and nothing more is sent.
    pub fn writer(&mut self) -> io::Result<Box<dyn Write + Send>> {
        self.0.writer()
    }

    pub fn resizer(&self) -> Resizer {
        Resizer(self.0.resizer())
    }

    /// Waits for the command to exit and returns its exit code. The terminal is then let go,
    /// so the reader reaches its end once it has read everything the command wrote.
    pub fn wait(self) -> io::Result<i32> {
        self.0.wait()
    }
}

impl Resizer {
    pub fn resize(&self, cols: u16, rows: u16) {
        self.0.resize(cols.max(1), rows.max(1))
    }
}

#[cfg(unix)]
mod imp {
    use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
    use std::io::{self, Read, Write};
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    type Master = Arc<Mutex<Option<Box<dyn MasterPty + Send>>>>;

    pub struct Pty {
        master: Master,
        child: Box<dyn Child + Send + Sync>,
    }

    #[derive(Clone)]
    pub struct Resizer(Master);

    fn other(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(e.to_string())
    }

    impl Pty {
        pub fn spawn(program: &str, args: &[String], cwd: &Path, cols: u16, rows: u16) -> io::Result<Pty> {
            let pair = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).map_err(other)?;
            let mut cmd = CommandBuilder::new(program);
            cmd.args(args);
            cmd.cwd(cwd);
            let child = pair.slave.spawn_command(cmd).map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
            // Only the command holds the terminal's other end: its exit ends the output.
            drop(pair.slave);
            Ok(Pty { master: Arc::new(Mutex::new(Some(pair.master))), child })
        }

        fn with_master<T, E: std::fmt::Display>(&self, f: impl FnOnce(&dyn MasterPty) -> Result<T, E>) -> io::Result<T> {
            let guard = self.master.lock().unwrap_or_else(|e| e.into_inner());
            f(guard.as_deref().ok_or_else(|| other("the terminal is closed"))?).map_err(other)
        }

        pub fn reader(&mut self) -> io::Result<Box<dyn Read + Send>> {
            self.with_master(|m| m.try_clone_reader())
        }

        pub fn writer(&mut self) -> io::Result<Box<dyn Write + Send>> {
            self.with_master(|m| m.take_writer())
        }

        pub fn resizer(&self) -> Resizer {
            Resizer(self.master.clone())
        }

        pub fn wait(mut self) -> io::Result<i32> {
            let status = self.child.wait()?;
            // The reader has a descriptor of its own and reads on to the end.
            self.master.lock().unwrap_or_else(|e| e.into_inner()).take();
            Ok(status.exit_code() as i32)
        }
    }

    impl Resizer {
        pub fn resize(&self, cols: u16, rows: u16) {
            if let Some(m) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = m.resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 });
            }
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::command_line::{command_line, resolve};
    use crate::os::win::wide;
    use std::fs::File;
    use std::io::{self, Read, Write};
    use std::os::windows::io::{FromRawHandle, OwnedHandle};
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_FAILED};
    use windows_sys::Win32::System::Console::{ClosePseudoConsole, CreatePseudoConsole, ResizePseudoConsole, COORD, HPCON};
    use windows_sys::Win32::System::Pipes::CreatePipe;
    use windows_sys::Win32::System::Threading::{
        CreateProcessW, DeleteProcThreadAttributeList, GetExitCodeProcess, InitializeProcThreadAttributeList, UpdateProcThreadAttribute,
        WaitForSingleObject, CREATE_UNICODE_ENVIRONMENT, EXTENDED_STARTUPINFO_PRESENT, INFINITE, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION,
        PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    };

    /// Keeps the calling console's cursor (windows-sys has no name for it).
    const PSEUDOCONSOLE_INHERIT_CURSOR: u32 = 1;

    /// A console size (its fields are `i16`).
    fn coord(cols: u16, rows: u16) -> COORD {
        COORD { X: cols.min(i16::MAX as u16) as i16, Y: rows.min(i16::MAX as u16) as i16 }
    }

    /// The pseudo console, until the command ended (then closed, once).
    struct Console(Mutex<Option<HPCON>>);

    // SAFETY: an HPCON is a handle, used under the mutex.
    unsafe impl Send for Console {}
    unsafe impl Sync for Console {}

    impl Console {
        fn close(&self) {
            if let Some(h) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
                // SAFETY: a pseudo console we created and close once. Its output pipe is being
                // read (the reader), so closing it cannot block on a full pipe.
                unsafe { ClosePseudoConsole(h) };
            }
        }
    }

    impl Drop for Console {
        fn drop(&mut self) {
            self.close();
        }
    }

    pub struct Pty {
        console: Arc<Console>,
        process: OwnedHandle,
        output: Option<File>,
        input: Option<File>,
        /// The console's input, open until the command exits: the console host shuts down
        /// when its input breaks, which would cut the command's output short.
        _input_kept: File,
    }

    /// Keys to the console; dropped, it sends the console's end of input (Ctrl-Z, Enter),
    /// as a Unix terminal's writer sends its EOF character.
    struct Writer(File);

    impl Write for Writer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl Drop for Writer {
        fn drop(&mut self) {
            let _ = self.0.write_all(b"\x1a\r\n");
        }
    }

    #[derive(Clone)]
    pub struct Resizer(Arc<Console>);

    fn pipe() -> io::Result<(File, File)> {
        let (mut read, mut write): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: two handles out, owned by the files below; neither is inheritable.
        unsafe {
            if CreatePipe(&mut read, &mut write, std::ptr::null(), 0) == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok((File::from_raw_handle(read.cast()), File::from_raw_handle(write.cast())))
        }
    }

    fn handle(f: &File) -> HANDLE {
        std::os::windows::io::AsRawHandle::as_raw_handle(f).cast()
    }

    impl Pty {
        pub fn spawn(program: &str, args: &[String], cwd: &Path, cols: u16, rows: u16) -> io::Result<Pty> {
            let (app, mut line) = command_line(&resolve(program, cwd)?, args)?;
            // In a console, the console's own cursor is kept (no clear screen at the start):
            // the hosting terminal answers the cursor-position request on our input, which
            // `vpd run` forwards. Elsewhere nothing would answer it, and the command would wait.
            let flags = if crate::os::terminal::is_console() { PSEUDOCONSOLE_INHERIT_CURSOR } else { 0 };
            let (input_read, input) = pipe()?;
            let (output, output_write) = pipe()?;
            let mut hpc: HPCON = 0;
            // SAFETY: pipe handles in; the console handle out is closed by `Console`.
            let hr = unsafe { CreatePseudoConsole(coord(cols, rows), handle(&input_read), handle(&output_write), flags, &mut hpc) };
            if hr != 0 {
                return Err(io::Error::other(format!("creating a pseudo console: HRESULT {hr:#x}")));
            }
            let console = Arc::new(Console(Mutex::new(Some(hpc))));
            // The pseudo console has its own copies; ours would keep the output open for good.
            drop((input_read, output_write));

            let attrs = Attributes::new()?;
            // SAFETY: the attribute list is initialised for one attribute; `hpc` outlives the call.
            unsafe {
                if UpdateProcThreadAttribute(
                    attrs.0,
                    0,
                    PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE as usize,
                    hpc as *const _,
                    std::mem::size_of::<HPCON>(),
                    std::ptr::null_mut(),
                    std::ptr::null(),
                ) == 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
            si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
            // Standard handles left empty, so the command gets the pseudo console's, never the
            // ones of `vpd run` (which may be redirected to a file or a pipe).
            si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
            si.lpAttributeList = attrs.0;
            let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
            let cwd = wide(cwd);
            let app = wide(app);
            // SAFETY: NUL-terminated strings that outlive the call; handles out are owned below.
            let ok = unsafe {
                CreateProcessW(
                    app.as_ptr(),
                    line.as_mut_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT,
                    std::ptr::null(),
                    cwd.as_ptr(),
                    &si.StartupInfo,
                    &mut pi,
                )
            };
            if ok == 0 {
                let e = io::Error::last_os_error();
                // The output is dropped before the console, whose close may wait for it.
                drop(output);
                drop(console);
                return Err(e);
            }
            // SAFETY: handles CreateProcessW returned; the thread's is not needed.
            let process = unsafe {
                CloseHandle(pi.hThread);
                OwnedHandle::from_raw_handle(pi.hProcess.cast())
            };
            let _input_kept = input.try_clone()?;
            Ok(Pty { console, process, output: Some(output), input: Some(input), _input_kept })
        }

        pub fn reader(&mut self) -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(self.output.take().ok_or_else(|| io::Error::other("the reader was taken"))?))
        }

        pub fn writer(&mut self) -> io::Result<Box<dyn Write + Send>> {
            Ok(Box::new(Writer(self.input.take().ok_or_else(|| io::Error::other("the writer was taken"))?)))
        }

        pub fn resizer(&self) -> Resizer {
            Resizer(self.console.clone())
        }

        pub fn wait(self) -> io::Result<i32> {
            let h: HANDLE = std::os::windows::io::AsRawHandle::as_raw_handle(&self.process).cast();
            let mut code = 0u32;
            // SAFETY: the process handle we own.
            unsafe {
                if WaitForSingleObject(h, INFINITE) == WAIT_FAILED || GetExitCodeProcess(h, &mut code) == 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The pseudo console stays open after its last process: closing it ends the output
            // (after what the command wrote).
            self.console.close();
            Ok(code as i32)
        }
    }

    impl Resizer {
        pub fn resize(&self, cols: u16, rows: u16) {
            if let Some(h) = *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) {
                // SAFETY: an open pseudo console (under the lock, so not being closed).
                unsafe { ResizePseudoConsole(h, coord(cols, rows)) };
            }
        }
    }

    /// A process-thread attribute list with room for one attribute.
    struct Attributes(LPPROC_THREAD_ATTRIBUTE_LIST, #[allow(dead_code)] Vec<usize>);

    impl Attributes {
        fn new() -> io::Result<Attributes> {
            let mut size = 0usize;
            // SAFETY: the first call only reports the size; the second initialises our buffer.
            unsafe {
                InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size);
                let mut buf = vec![0usize; size.div_ceil(std::mem::size_of::<usize>())];
                let list = buf.as_mut_ptr().cast();
                if InitializeProcThreadAttributeList(list, 1, 0, &mut size) == 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(Attributes(list, buf))
            }
        }
    }

    impl Drop for Attributes {
        fn drop(&mut self) {
            // SAFETY: initialised in `new`.
            unsafe { DeleteProcThreadAttributeList(self.0) };
        }
    }
}

/// Windows: which file a command names, and the command line that passes its arguments as
/// typed. Plain code (no system calls), built and unit-tested on every OS.
#[cfg_attr(not(windows), allow(dead_code))]
mod command_line {
    use std::io;
    use std::path::{Path, PathBuf};

    /// The file `program` names: a path (relative to `cwd`), or a name looked up in `PATH`
    /// only — never in the folder, which may be a repository's (a planted `git.exe`) — with
    /// `PATHEXT`'s extensions that Windows can start tried when it has none (`claude` finds
    /// `claude.cmd`; `.js` or `.vbs` files are not programs to CreateProcessW).
    pub fn resolve(program: &str, cwd: &Path) -> io::Result<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let exts = std::env::var("PATHEXT").unwrap_or_else(|_| ".COM;.EXE;.BAT;.CMD".into());
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        find(program, cwd, &dirs, &exts, |p| p.is_file()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{program} was not found on PATH (a program in this folder: .\\{program})"))
        })
    }

    pub fn find(program: &str, cwd: &Path, path: &[PathBuf], pathext: &str, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let has_ext = Path::new(program).extension().is_some();
        let candidates = |base: PathBuf| -> Vec<PathBuf> {
            let mut v = Vec::new();
            if has_ext {
                v.push(base.clone());
            }
            let startable = |e: &&str| [".com", ".exe", ".bat", ".cmd"].contains(&e.to_ascii_lowercase().as_str());
            for ext in pathext.split(';').filter(startable) {
                let mut s = base.clone().into_os_string();
                s.push(ext.to_ascii_lowercase());
                v.push(PathBuf::from(s));
            }
            v
        };
        let named_path = program.contains(['\\', '/', ':']);
        let bases: Vec<PathBuf> = if named_path { vec![cwd.join(program)] } else { path.iter().map(|d| d.join(program)).collect() };
        bases.into_iter().flat_map(candidates).find(|p| exists(p))
    }

    /// `(application, command line)` for CreateProcessW: the arguments quoted as the C
    /// runtime splits them (backslashes doubled only before a quote). A batch file runs through
    /// `cmd.exe /d /s /c`, which would reread `"`, `%` and line breaks: an argument with one
    /// of those is refused rather than changed.
    pub fn command_line(program: &Path, args: &[String]) -> io::Result<(PathBuf, Vec<u16>)> {
        let ext = program.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        let batch = matches!(ext.as_deref(), Some("bat" | "cmd"));
        if batch && program.to_string_lossy().contains(['"', '%']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a batch file whose path has \" or %, which cmd would reread; move or rename it", program.display()),
            ));
        }
        let mut line = String::new();
        quote(&program.to_string_lossy(), &mut line, batch);
        for a in args {
            if batch && a.contains(['"', '%', '\n', '\r']) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a batch file, and cmd would reread the argument {a:?} (it has \", % or a line break); vpd run passes such arguments only to programs (.exe)",
                        program.display()
                    ),
                ));
            }
            line.push(' ');
            quote(a, &mut line, batch);
        }
        let (app, line) = if batch {
            let cmd = std::env::var_os("ComSpec").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(r"C:\Windows\System32\cmd.exe"));
            (cmd, format!("cmd.exe /d /v:off /s /c \"{line}\""))
        } else {
            (program.to_path_buf(), line)
        };
        Ok((app, line.encode_utf16().chain(Some(0)).collect()))
    }

    fn quote(arg: &str, out: &mut String, batch: bool) {
        let special = if batch { " \t\"&|<>^()!,;=" } else { " \t\"" };
        if !arg.is_empty() && !arg.contains(|c| special.contains(c)) {
            out.push_str(arg);
            return;
        }
        out.push('"');
        let mut backslashes = 0;
        for c in arg.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                    out.push('"');
                    backslashes = 0;
                }
                c => {
                    out.extend(std::iter::repeat_n('\\', backslashes));
                    out.push(c);
                    backslashes = 0;
                }
            }
        }
        out.extend(std::iter::repeat_n('\\', backslashes * 2));
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::command_line::{command_line, find};
    use std::path::{Path, PathBuf};

    fn line(program: &str, args: &[&str]) -> (PathBuf, String) {
        let (app, w) = command_line(Path::new(program), &args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        (app, String::from_utf16(&w[..w.len() - 1]).unwrap())
    }

    #[test]
    fn arguments_are_quoted_as_the_c_runtime_splits_them() {
        let (app, l) = line(r"C:\Tools\node.exe", &["plain", "two words", "", r#"say "hi""#, r"C:\my dir\", r"C:\dir\", r#"a\"b"#, r"x\\y"]);
        assert_eq!(app, PathBuf::from(r"C:\Tools\node.exe"));
        assert_eq!(l, r#"C:\Tools\node.exe plain "two words" "" "say \"hi\"" "C:\my dir\\" C:\dir\ "a\\\"b" x\\y"#);
        let (_, l) = line(r"C:\Program Files\Claude\claude.exe", &["--help"]);
        assert_eq!(l, r#""C:\Program Files\Claude\claude.exe" --help"#);
    }

    #[test]
    fn a_batch_file_runs_through_cmd_and_an_argument_cmd_would_reread_is_refused() {
        let (app, l) = line(r"C:\npm\claude.cmd", &["--resume", "a&b", "x y"]);
        assert!(app.to_string_lossy().to_ascii_lowercase().ends_with("cmd.exe"));
        assert_eq!(l, r#"cmd.exe /d /v:off /s /c "C:\npm\claude.cmd --resume "a&b" "x y"""#);
        let e = command_line(Path::new(r"C:\100%\x.cmd"), &[]).unwrap_err();
        assert!(e.to_string().contains("move or rename it"), "{e}");
        for bad in [r#"say "hi""#, "%PATH%", "two\nlines"] {
            let e = command_line(Path::new(r"C:\npm\claude.CMD"), &[bad.to_string()]).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("only to programs"), "{e}");
        }
    }

    #[test]
    fn a_name_is_found_on_path_with_pathext_and_a_path_relative_to_the_folder() {
        let path = [PathBuf::from("/bin1"), PathBuf::from("/bin2")];
        let files = [
            "/bin2/claude.cmd",
            "/bin1/node.exe",
            "/bin2/node.exe",
            "/work/tool.bat",
            "/bin2/git",
            "/bin1/serve.js",
            "/bin2/serve.exe",
            "/work/planted.exe",
        ];
        let exists = |p: &Path| files.iter().any(|f| Path::new(f) == p);
        let exts = ".COM;.EXE;.BAT;.CMD";
        assert_eq!(find("claude", Path::new("/work"), &path, exts, exists), Some(PathBuf::from("/bin2/claude.cmd")));
        assert_eq!(find("node", Path::new("/work"), &path, exts, exists), Some(PathBuf::from("/bin1/node.exe")), "PATH's order");
        assert_eq!(find("node.exe", Path::new("/work"), &path, exts, exists), Some(PathBuf::from("/bin1/node.exe")));
        assert_eq!(find("./tool", Path::new("/work"), &path, exts, exists), Some(PathBuf::from("/work/./tool.bat")));
        assert_eq!(find("git", Path::new("/work"), &path, exts, exists), None, "no extension: not a program Windows can start");
        assert_eq!(find("missing", Path::new("/work"), &path, exts, exists), None);
        let with_js = ".COM;.EXE;.BAT;.CMD;.VBS;.JS";
        assert_eq!(find("serve", Path::new("/work"), &path, with_js, exists), Some(PathBuf::from("/bin2/serve.exe")), "a .js is no program");
        assert_eq!(find("planted", Path::new("/work"), &path, exts, exists), None, "a bare name is never looked for in the folder");
    }
}
