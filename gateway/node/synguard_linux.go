//go:build linux

package node

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// synGuardTable is the nftables table edgegate owns for its SYN guard.
const synGuardTable = "edgegate_guard"

// synGuardPriority runs the guard's forward hook before anything else of the same hook (raw).
const synGuardPriority = -300

// TCP header facts the guard's match needs: the flags byte and the SYN and ACK bits.
const (
	tcpFlagsOffset = 13
	tcpFlagSYN     = 0x02
	tcpFlagACK     = 0x10
)

var guardTable = &nftables.Table{Name: synGuardTable, Family: nftables.TableFamilyINet}

// installSYNGuard limits the TCP connection attempts (SYN without ACK) the kernel forwards into
// the TUN to rate per second with burst, dropping the excess in the forward hook before it reaches
// the device's ring: there a flood would otherwise displace established flows' packets, since the
// ring drops without regard to the flow. This kernel has neither the flower classifier nor the
// police action, so the guard is an nft rule in edgegate's own table, equivalent to
//
//	table inet edgegate_guard {
//		chain syn {
//			type filter hook forward priority -300; policy accept;
//			oifname TUN tcp flags & (syn | ack) == syn limit rate over RATE/second burst BURST packets counter drop
//		}
//	}
//
// It is written over netlink (nf_tables), not by running nft, so it works after the privilege
// drop (CAP_NET_ADMIN is not passed on to an exec'd program) and needs no nft binary. The table
// is replaced as a whole in one transaction: no moment without a guard or with two.
func installSYNGuard(tun string, rate, burst int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("install SYN guard (tun.syn_rate_limit): %w", err)
	}
	c.AddTable(guardTable) // add, then delete: the delete never fails for a missing table
	c.DelTable(guardTable)
	c.AddTable(guardTable)
	accept := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name: "syn", Table: guardTable, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(synGuardPriority), Policy: &accept,
	})
	c.AddRule(&nftables.Rule{Table: guardTable, Chain: chain, Exprs: synGuardRule(tun, rate, burst)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install SYN guard (tun.syn_rate_limit) over netlink: %w", err)
	}
	return nil
}

// synGuardRule is the rule's expressions, as nft compiles the rule above (in the inet family
// "tcp flags" carries the l4proto dependency).
func synGuardRule(tun string, rate, burst int) []expr.Any {
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, tun)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOffset, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagSYN | tcpFlagACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpFlagSYN}},
		&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rate), Over: true, Unit: expr.LimitTimeSecond, Burst: uint32(burst)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// removeSYNGuard deletes the guard table if it exists.
func removeSYNGuard() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("remove SYN guard: %w", err)
	}
	c.AddTable(guardTable)
	c.DelTable(guardTable)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove SYN guard over netlink: %w", err)
	}
	return nil
}
