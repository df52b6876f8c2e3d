//! The node's network: its non-loopback address, a pod subnet no route uses yet, the CNI
//! configuration (a bridge of this environment's own, host-local IPAM under the environment's
//! folder), and removing the bridge again.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::super::error::{Error, Result};

/// The first global IPv4 address of this host (the kubelet refuses a loopback node IP).
pub(crate) fn host_ip() -> Result<IpAddr> {
    let output = Command::new("ip")
        .args(["-j", "-4", "addr", "show", "scope", "global"])
        .output()
        .map_err(|e| requirement(format!("running `ip -j -4 addr`: {e} (install iproute2)")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_host_ip(&text).ok_or_else(|| {
        requirement(
            "this host has no global IPv4 address for the node (set NodeOptions::node_ip)"
                .to_owned(),
        )
    })
}

fn parse_host_ip(ip_json: &str) -> Option<IpAddr> {
    let links: Vec<serde_json::Value> = serde_json::from_str(ip_json).ok()?;
    links
        .iter()
        .filter(|link| link["ifname"].as_str() != Some("lo"))
        .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
        .filter(|addr| addr["family"].as_str() == Some("inet"))
        .filter_map(|addr| addr["local"].as_str()?.parse::<Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback() && !ip.is_link_local())
        .map(IpAddr::V4)
}

/// A `10.244.N.0/24` that no route in `/proc/net/route` overlaps, starting from `seed`.
pub(crate) fn free_pod_subnet(seed: u8) -> Result<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let used = parse_routes(&routes);
    (0..=255u8)
        .map(|i| Ipv4Addr::new(10, 244, seed.wrapping_add(i), 0))
        .find(|subnet| {
            let net = u32::from(*subnet);
            used.iter().all(|&(dest, mask)| {
                // Overlap test at the shorter of the two prefixes; the default route is no use.
                let shorter = mask & 0xFFFF_FF00;
                mask == 0 || (net & shorter) != (dest & shorter)
            })
        })
        .ok_or_else(|| requirement("no free 10.244.N.0/24 pod subnet on this host".to_owned()))
}

/// `(destination, mask)` of each route, as host-order integers (the file holds them in
/// little-endian hex).
fn parse_routes(table: &str) -> Vec<(u32, u32)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            Some((
                u32::from_be_bytes(dest.to_le_bytes()),
                u32::from_be_bytes(mask.to_le_bytes()),
            ))
        })
        .collect()
}

/// The CNI network configuration list for containerd: a bridge with the subnet's `.1` as
/// gateway, host-local IPAM keeping its state in `ipam_dir`, and loopback.
pub(crate) fn cni_config(network: &str, bridge: &str, subnet: Ipv4Addr, ipam_dir: &Path) -> String {
    json!({
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": [[{"subnet": format!("{subnet}/24")}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }],
    })
    .to_string()
}

/// Removes the bridge and any veth still attached to it (pods' ends go with their network
/// namespaces). Errors are logged: teardown goes on.
pub(crate) fn remove_bridge(bridge: &str) {
    let sys = Path::new("/sys/class/net").join(bridge);
    if !sys.exists() {
        return;
    }
    if let Ok(ports) = std::fs::read_dir(sys.join("brif")) {
        for port in ports.flatten() {
            ip_link_delete(&port.file_name().to_string_lossy());
        }
    }
    ip_link_delete(bridge);
}

fn ip_link_delete(name: &str) {
    match Command::new("ip").args(["link", "delete", name]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            link = name,
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "envtest node: deleting a network link failed"
        ),
        Err(e) => tracing::warn!(link = name, error = %e, "envtest node: running `ip` failed"),
    }
}

fn requirement(what: String) -> Error {
    Error::NodeRequirement { what }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ip_skips_loopback_and_link_local() {
        let json = r#"[
          {"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1"}]},
          {"ifname":"eth1","addr_info":[{"family":"inet","local":"169.254.3.4"}]},
          {"ifname":"eth0","addr_info":[{"family":"inet6","local":"fe80::1"},{"family":"inet","local":"192.0.2.2"}]}
        ]"#;
        assert_eq!(parse_host_ip(json), Some("192.0.2.2".parse().unwrap()));
        assert_eq!(parse_host_ip("[]"), None);
        assert_eq!(parse_host_ip("garbage"), None);
    }

    #[test]
    fn routes_are_read_in_network_order() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t000010AC\t00000000\t0001\t0\t0\t0\t00F0FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_routes(table),
            vec![(
                u32::from(Ipv4Addr::new(172, 16, 0, 0)),
                u32::from(Ipv4Addr::new(255, 255, 240, 0))
            )]
        );
    }

    #[test]
    fn cni_config_names_bridge_subnet_and_ipam_dir() {
        let config = cni_config(
            "net-a",
            "br-a",
            Ipv4Addr::new(10, 244, 7, 0),
            Path::new("/x/ipam"),
        );
        let v: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(v["name"], "net-a");
        assert_eq!(v["plugins"][0]["bridge"], "br-a");
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/x/ipam");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.7.0/24"
        );
    }
}
