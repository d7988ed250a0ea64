//! Writes the manual page, memory_coordinator(8), to stdout: `make man`.
//!
//! Generated from the clap definition, so the options in the page are the options the binary
//! takes. The sections after the options (examples, configuration file, signals, exit status,
//! files) come from the same text `--help` prints after its options: each line there that
//! starts in column 0 and ends with ':' opens a section, and what follows it is kept as laid
//! out (examples and JSON must not be refilled).
//!
//! An example rather than a build script or a subcommand: clap_mangen and roff stay
//! dev-dependencies, never linked into the daemon, and nothing is generated on every build.

use std::io::Write;

use clap::CommandFactory;
use memory_coordinator::cli::Cli;
use roff::{Roff, roman};

fn main() -> std::io::Result<()> {
    let cmd = Cli::command();
    // Section 8: a daemon an administrator runs as root. The date is the last commit's
    // (`make man` passes it), so the same source gives the same page; an empty date would
    // shift the .TH arguments.
    let date = std::env::var("MAN_DATE").ok().filter(|d| !d.trim().is_empty()).unwrap_or_else(|| "undated".to_owned());
    let man = clap_mangen::Man::new(cmd.clone()).section("8").date(date).manual("System Administration");
    let mut out = std::io::stdout().lock();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::default();
    let more = cmd.get_after_long_help().map(ToString::to_string).unwrap_or_default();
    let mut open = false;
    for line in more.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            if open {
                roff.control("fi", [] as [&str; 0]);
            }
            let title = line.trim_end_matches(':').to_uppercase();
            roff.control("SH", [title.as_str()]);
            roff.control("nf", [] as [&str; 0]);
            open = true;
        } else if line.is_empty() {
            roff.control("sp", [] as [&str; 0]);
        } else {
            roff.text([roman(line)]);
        }
    }
    if open {
        roff.control("fi", [] as [&str; 0]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("virsh(1), qemu-system-x86_64(1), systemctl(1), systemd.exec(5)")]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    out.flush()
}
