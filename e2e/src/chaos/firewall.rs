//! Cutting the operator off from one media node's admin port: an `iptables` rule on the
//! loopback traffic of one process group (`-m owner --gid-owner`, the group the chaos suite
//! runs its operators with), dropped silently as a broken network would. Everyone else (the
//! pod runner's readiness probes, the participants) still reaches the node. The rule is
//! removed when the [`Cut`] is dropped; each rule carries the comment [`TAG`], so that a
//! leftover of a killed run is found by `iptables -S OUTPUT | grep ruche-chaos`.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::{Error, Result};

/// The comment every rule carries.
pub const TAG: &str = "ruche-chaos";

/// The arguments of the rule, after `-A`/`-D OUTPUT`.
pub fn rule(gid: u32, address: Ipv4Addr, port: u16) -> Vec<String> {
    [
        "-d",
        &format!("{address}/32"),
        "-p",
        "tcp",
        "--dport",
        &port.to_string(),
        "-m",
        "owner",
        "--gid-owner",
        &gid.to_string(),
        "-m",
        "comment",
        "--comment",
        TAG,
        "-j",
        "DROP",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn iptables(op: &str, rule: &[String]) -> Result<()> {
    let output = Command::new("iptables")
        .args([op, "OUTPUT"])
        .args(rule)
        .output()
        .map_err(|e| Error::io("cannot run iptables", e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "iptables {op} OUTPUT {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A rule in force.
#[derive(Debug)]
pub struct Cut {
    rule: Vec<String>,
}

impl Cut {
    /// Drops the TCP packets that processes of group `gid` send to `address:port`.
    pub fn apply(gid: u32, address: Ipv4Addr, port: u16) -> Result<Self> {
        let rule = rule(gid, address, port);
        iptables("-A", &rule)?;
        Ok(Self { rule })
    }

    /// Whether `iptables` with the owner and comment matches works here (root, netfilter).
    pub fn available() -> Result<()> {
        let probe = rule(u32::MAX - 1, Ipv4Addr::new(127, 0, 0, 254), 9);
        iptables("-A", &probe)?;
        iptables("-D", &probe)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Err(e) = iptables("-D", &self.rule) {
            eprintln!("chaos: could not remove the firewall rule: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_the_group_the_address_and_the_port_and_drops() {
        let r = rule(4242, Ipv4Addr::new(127, 0, 0, 12), 7881).join(" ");
        assert_eq!(
            r,
            "-d 127.0.0.12/32 -p tcp --dport 7881 -m owner --gid-owner 4242 -m comment --comment ruche-chaos -j DROP"
        );
    }
}
