//! `vpd hook bash|zsh|fish`: shell code that runs `vpd hint` whenever the working directory
//! changes (not on every prompt), with the absolute path of this binary.

use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn print(shell: Shell) -> Result<ExitCode, vpd_daemon::Error> {
    let exe = std::env::current_exe().map_err(|e| vpd_daemon::Error::io("finding the vpd binary", e))?;
    let exe = shell_quote(&exe.display().to_string());
    let script = match shell {
        Shell::Bash => format!(
            r#"_vpd_hook() {{
  local previous_exit_status=$?
  if [[ "${{_VPD_LAST_DIR:-}}" != "$PWD" ]]; then
    _VPD_LAST_DIR="$PWD"
    {exe} hint
  fi
  return $previous_exit_status
}}
if [[ ";${{PROMPT_COMMAND[*]:-}};" != *";_vpd_hook;"* ]]; then
  PROMPT_COMMAND="_vpd_hook${{PROMPT_COMMAND:+;$PROMPT_COMMAND}}"
fi
"#
        ),
        Shell::Zsh => format!(
            r#"_vpd_hook() {{
  {exe} hint
}}
autoload -Uz add-zsh-hook
add-zsh-hook chpwd _vpd_hook
_vpd_hook
"#
        ),
        Shell::Fish => format!(
            r#"function __vpd_hook --on-variable PWD --description 'vpd binding hints'
    {exe} hint
end
__vpd_hook
"#
        ),
    };
    print!("{script}");
    Ok(ExitCode::SUCCESS)
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
