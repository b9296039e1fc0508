#!/bin/bash
# The article's netns.sh, transcribed (comments translated): the baseline that bench/net
# times labctl against, and a lab "labctl did not build" for `labctl check`.
# Usage: article-netns.sh create|clean     (as root)
# Like the original, it runs one ip/iptables command at a time, creates each veth in the
# host's namespace and then moves its ends into the lab's namespaces.
set -e
CMD="${1:?}"

NODES=("c0" "c1")
NODE_IPS=("10.0.1.1/24" "10.0.2.1/24")
NAT_FOR_NODE_IPS=("10.0.1.100/24" "10.0.2.100/24")
NAT_FOR_INET_IPS=("100.64.1.100/24" "100.64.2.100/24")
INET_FOR_NAT_IPS=("100.64.1.254/24" "100.64.2.254/24")
INET="inet"
NAT_TYPES=("${NAT_TYPE_C0:-fullcone}" "${NAT_TYPE_C1:-restcone}")

function set_iptables_for_nat() {
  local idx=${1:?}
  local type=${NAT_TYPES[$idx]}
  local node_ns="ns-${NODES[$idx]}"
  local node_veth="ve-${NODES[$idx]}"
  local node_ip="${NODE_IPS[$idx]}"
  node_ip="${node_ip%/*}"
  local nat_ns="${node_ns}-nat"
  local nat_for_node_veth="${node_veth}-nat-node"
  local nat_for_inet_veth="${node_veth}-nat-inet"
  local nat_for_inet_ip=${NAT_FOR_INET_IPS[$idx]}
  nat_for_inet_ip="${nat_for_inet_ip%/*}"
  local in_nat_port=12345
  local out_nat_port=54321
  ip netns exec "${nat_ns}" iptables -F
  ip netns exec "${nat_ns}" iptables -X
  ip netns exec "${nat_ns}" iptables -t nat -F
  ip netns exec "${nat_ns}" iptables -t nat -X
  ip netns exec "${nat_ns}" iptables -P INPUT DROP
  ip netns exec "${nat_ns}" iptables -P FORWARD DROP
  ip netns exec "${nat_ns}" sysctl -q -w net.ipv4.ip_forward=1
  case "$type" in
    fullcone | restcone | portrestcone)
      ip netns exec "${nat_ns}" iptables -t nat -A POSTROUTING -o "${nat_for_inet_veth}" -p tcp -j SNAT --to-source "${nat_for_inet_ip}:${out_nat_port}"
      ip netns exec "${nat_ns}" iptables -t nat -A POSTROUTING -o "${nat_for_inet_veth}" -p udp -j SNAT --to-source "${nat_for_inet_ip}:${out_nat_port}"
      ip netns exec "${nat_ns}" iptables -t nat -A PREROUTING -i "${nat_for_inet_veth}" -p tcp --dport "${out_nat_port}" -j DNAT --to-destination "${node_ip}:${in_nat_port}"
      ip netns exec "${nat_ns}" iptables -t nat -A PREROUTING -i "${nat_for_inet_veth}" -p udp --dport "${out_nat_port}" -j DNAT --to-destination "${node_ip}:${in_nat_port}"
      ip netns exec "${nat_ns}" iptables -A FORWARD -p tcp -i "${nat_for_node_veth}" -j ACCEPT
      ip netns exec "${nat_ns}" iptables -A FORWARD -p udp -i "${nat_for_node_veth}" -j ACCEPT
      ;;
    *) ;;
  esac
  case "$type" in
    fullcone)
      ip netns exec "${nat_ns}" iptables -A FORWARD -p tcp -d "${node_ip}" --dport "${in_nat_port}" -j ACCEPT
      ip netns exec "${nat_ns}" iptables -A FORWARD -p udp -d "${node_ip}" --dport "${in_nat_port}" -j ACCEPT
      ;;
    restcone)
      # "only from peers the inside has talked to (judged by IP address only)" -- but a
      # conntrack state match checks the port as well: this is port-restricted in fact.
      ip netns exec "${nat_ns}" iptables -A FORWARD -p tcp -d "${node_ip}" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      ip netns exec "${nat_ns}" iptables -A FORWARD -p udp -d "${node_ip}" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      ;;
    portrestcone)
      ip netns exec "${nat_ns}" iptables -A FORWARD -p tcp -d "${node_ip}" --dport "${in_nat_port}" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      ip netns exec "${nat_ns}" iptables -A FORWARD -p udp -d "${node_ip}" --dport "${in_nat_port}" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      ;;
    symmetric)
      ip netns exec "${nat_ns}" iptables -t nat -A POSTROUTING -o "${nat_for_inet_veth}" -j MASQUERADE
      ;;
  esac
}

function create_inet() {
  ip netns add "ns-${INET}"
  ip netns exec "ns-${INET}" iptables -P FORWARD ACCEPT
  ip netns exec "ns-${INET}" sysctl -q -w net.ipv4.ip_forward=1
}

function delete_inet() {
  ip netns del "ns-${INET}"
}

function create_network() {
  local idx=${1:?}
  local node_ns="ns-${NODES[$idx]}"
  local node_veth="ve-${NODES[$idx]}"
  local node_ip="${NODE_IPS[$idx]}"
  local nat_ns="${node_ns}-nat"
  local nat_for_node_veth="${node_veth}-nat-node"
  local nat_for_node_ip=${NAT_FOR_NODE_IPS[$idx]}
  local nat_for_inet_veth="${node_veth}-nat-inet"
  local nat_for_inet_ip=${NAT_FOR_INET_IPS[$idx]}
  local inet_ns="ns-${INET}"
  local inet_veth="${node_veth}-inet"
  local inet_for_nat_ip="${INET_FOR_NAT_IPS[$idx]}"
  ip link add dev "${node_veth}" type veth peer name "${nat_for_node_veth}"
  ip netns add "${node_ns}"
  ip link set dev "${node_veth}" netns "${node_ns}"
  ip -n "${node_ns}" addr add dev "${node_veth}" "${node_ip}"
  ip -n "${node_ns}" link set dev "${node_veth}" up
  ip -n "${node_ns}" route add default via "${nat_for_node_ip%/*}"
  ip netns add "${nat_ns}"
  ip link set dev "${nat_for_node_veth}" netns "${nat_ns}"
  ip -n "${nat_ns}" addr add dev "${nat_for_node_veth}" "${nat_for_node_ip}"
  ip -n "${nat_ns}" link set dev "${nat_for_node_veth}" up
  ip link add dev "${nat_for_inet_veth}" type veth peer name "${inet_veth}"
  ip link set dev "${nat_for_inet_veth}" netns "${nat_ns}"
  ip link set dev "${inet_veth}" netns "${inet_ns}"
  ip -n "${nat_ns}" addr add dev "${nat_for_inet_veth}" "${nat_for_inet_ip}"
  ip -n "${nat_ns}" link set dev "${nat_for_inet_veth}" up
  ip -n "${nat_ns}" route add default via "${inet_for_nat_ip%/*}"
  ip -n "${inet_ns}" addr add dev "${inet_veth}" "${inet_for_nat_ip}"
  ip -n "${inet_ns}" link set dev "${inet_veth}" up
  set_iptables_for_nat "${idx}"
}

function delete_network() {
  local idx=${1:?}
  local node_ns="ns-${NODES[$idx]}"
  local nat_ns="${node_ns}-nat"
  ip netns del "${node_ns}"
  ip netns del "${nat_ns}"
}

if [[ "${CMD}" = "create" ]]; then
  create_inet
  for i in "${!NODES[@]}"; do create_network "${i}"; done
elif [[ "${CMD}" = "clean" ]]; then
  delete_inet
  for i in "${!NODES[@]}"; do delete_network "${i}"; done
fi
