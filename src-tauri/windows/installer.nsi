; The Windows installer (issue 12 item 6), built by scripts/package-windows.sh with Debian's
; NSIS (makensis) and no plug-ins: Tauri's own NSIS step downloads its plug-ins from GitHub.
; A per-user install (no administrator): the binaries go to
; %LOCALAPPDATA%\Programs\Viewport, that folder goes on the user's PATH (so `vpd` works in
; any new terminal), an uninstaller is registered under Apps, and viewport-package.json tells
; `vpd update` that this installer owns the files (it names what to run instead).
;
; makensis -DVERSION=0.1.0 -DBINDIR=<folder with the .exe files> -DOUTFILE=<setup.exe> installer.nsi

Unicode true
; A 64-bit installer: vpd is a 64-bit program (and Wine runs only 64-bit here).
Target amd64-unicode
!include "LogicLib.nsh"
!include "WordFunc.nsh"
!include "WinMessages.nsh"

!ifndef VERSION
  !error "-DVERSION=… is required"
!endif
!ifndef BINDIR
  !error "-DBINDIR=… is required"
!endif
!ifndef OUTFILE
  !define OUTFILE "viewport-${VERSION}-setup.exe"
!endif

Name "Viewport ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\Viewport"
RequestExecutionLevel user
SetCompressor /SOLID lzma
ShowInstDetails show

!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Viewport"

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles

Section "Viewport"
  SetOutPath "$INSTDIR"
  File "${BINDIR}\vpd.exe"
  File "${BINDIR}\vpd-daemon.exe"
  File /nonfatal "${BINDIR}\viewport-tray.exe"
  File /nonfatal "${BINDIR}\viewport-window.exe"
  ; `vpd update` never overwrites these files; it names this instead.
  FileOpen $0 "$INSTDIR\viewport-package.json" w
  FileWrite $0 '{"manager": "the Viewport installer", "command": "run the newer viewport-setup.exe (or winget upgrade Viewport)"}$\r$\n'
  FileClose $0
  WriteUninstaller "$INSTDIR\uninstall.exe"
  ; The tray in the Start menu (`vpd install` makes it the login item when it is here).
  !if /FileExists "${BINDIR}/viewport-tray.exe"
    CreateShortcut "$SMPROGRAMS\Viewport.lnk" "$INSTDIR\viewport-tray.exe"
  !endif

  ; On the user's PATH, once.
  ReadRegStr $1 HKCU "Environment" "Path"
  ${WordFind} "$1" "$INSTDIR" "E+1{" $2
  ${If} ${Errors}
    ${If} $1 == ""
      WriteRegExpandStr HKCU "Environment" "Path" "$INSTDIR"
    ${Else}
      WriteRegExpandStr HKCU "Environment" "Path" "$1;$INSTDIR"
    ${EndIf}
    SendMessage ${HWND_BROADCAST} ${WM_SETTINGCHANGE} 0 "STR:Environment" /TIMEOUT=2000
  ${EndIf}

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "Viewport"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "Viewport"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  ; The daemon stops first (its home, pairings and bindings stay: `vpd uninstall --purge`
  ; removes those).
  ExecWait '"$INSTDIR\vpd.exe" daemon stop'
  Delete "$INSTDIR\vpd.exe"
  Delete "$INSTDIR\vpd-daemon.exe"
  Delete "$INSTDIR\viewport-tray.exe"
  Delete "$INSTDIR\viewport-window.exe"
  Delete "$INSTDIR\viewport-package.json"
  Delete "$INSTDIR\uninstall.exe"
  Delete "$SMPROGRAMS\Viewport.lnk"
  RMDir "$INSTDIR"

  ReadRegStr $1 HKCU "Environment" "Path"
  ${WordReplace} "$1" ";$INSTDIR" "" "+" $2
  ${WordReplace} "$2" "$INSTDIR;" "" "+" $2
  ${WordReplace} "$2" "$INSTDIR" "" "+" $2
  WriteRegExpandStr HKCU "Environment" "Path" "$2"
  SendMessage ${HWND_BROADCAST} ${WM_SETTINGCHANGE} 0 "STR:Environment" /TIMEOUT=2000
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
