package nat

import (
	"sync/atomic"
	"time"
)

// ICMP answers the gateway itself sends (echo replies for service addresses, port unreachable
// refusals) are rate limited like the kernel's own (net.ipv4.icmp_msgs_per_sec and
// icmp_msgs_burst): a flood of pings or of UDP to a service without backends cannot make the
// node a reflector. Answers over the limit are dropped and counted (ICMPRateLimited).
const (
	// ICMPRatePerSec is the sustained rate of ICMP answers (the kernel's icmp_msgs_per_sec).
	ICMPRatePerSec = 1000
	// ICMPBurst is how many answers may go at once after a quiet period (icmp_msgs_burst).
	ICMPBurst = 50
)

// icmpInterval is the time one answer costs in the bucket.
const icmpInterval = int64(time.Second) / ICMPRatePerSec

// rateLimiter is a token bucket written as GCRA: one atomic word, the theoretical arrival time
// of the next answer, so workers share it without a lock. The zero value is a full bucket.
type rateLimiter struct{ tat atomic.Int64 }

// allow takes one token at now (unix ns); false when the bucket is empty.
func (l *rateLimiter) allow(now int64) bool {
	for {
		tat := l.tat.Load()
		next := max(tat, now)
		if next-now > (ICMPBurst-1)*icmpInterval {
			return false
		}
		if l.tat.CompareAndSwap(tat, next+icmpInterval) {
			return true
		}
	}
}
