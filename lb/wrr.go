package lb

import "container/heap"

// maxWRRSequence bounds the precomputed weighted round robin sequence (entries). Weights whose
// reduced sum exceeds it are scaled down proportionally (every eligible backend keeps at least
// one entry), which changes shares by at most about n/maxWRRSequence.
const maxWRRSequence = 1 << 16

// maxWRRWork bounds the exact nginx computation, which costs len(sequence)*n steps; above it
// the sequence comes from stride scheduling (see wrrSequence).
const maxWRRWork = 1 << 24

// wrrSequence precomputes one period of smooth weighted round robin over the eligible backends
// (indices into backends, in configuration order) so concurrent Picks only need an atomic
// counter. Weights are first divided by their gcd, so the period is sum(weights)/gcd.
//
// When period*n is small enough (always for realistic services) the sequence is exactly
// nginx's smooth WRR (ngx_http_upstream_get_peer: every peer's current weight grows by its
// weight, the largest is chosen and loses the total; ties go to the earlier peer), e.g.
// weights {5,1,1} give a a b a c a a. Otherwise it is stride scheduling (each peer's k-th pick
// at virtual time (k-1/2)/weight), which is equally smooth and costs O(period log n).
func wrrSequence(backends []Backend, eligible []int32) []uint16 {
	w := make([]int64, len(eligible))
	var g, total int64
	for k, i := range eligible {
		w[k] = int64(backends[i].Weight)
		g = gcd(g, w[k])
	}
	for k := range w {
		w[k] /= g
		total += w[k]
	}
	if total > maxWRRSequence {
		scaled := int64(0)
		for k := range w {
			w[k] = max(1, (w[k]*maxWRRSequence+total/2)/total)
			scaled += w[k]
		}
		total = scaled
	}
	seq := make([]uint16, 0, total)
	if total*int64(len(w)) <= maxWRRWork {
		cur := make([]int64, len(w))
		for range total {
			best := 0
			for k := range w {
				cur[k] += w[k]
				if cur[k] > cur[best] {
					best = k
				}
			}
			cur[best] -= total
			seq = append(seq, uint16(eligible[best]))
		}
		return seq
	}
	h := &strideHeap{w: w, picks: make([]int64, len(w)), pos: make([]int32, len(w))}
	for k := range h.pos {
		h.pos[k] = int32(k)
	}
	heap.Init(h)
	for range total {
		k := h.pos[0]
		seq = append(seq, uint16(eligible[k]))
		h.picks[k]++
		heap.Fix(h, 0)
	}
	return seq
}

// strideHeap orders peers by their next virtual pick time (2*picks+1)/(2*weight), ties by
// position.
type strideHeap struct {
	w, picks []int64
	pos      []int32
}

func (h *strideHeap) Len() int { return len(h.pos) }
func (h *strideHeap) Less(i, j int) bool {
	a, b := h.pos[i], h.pos[j]
	l, r := (2*h.picks[a]+1)*h.w[b], (2*h.picks[b]+1)*h.w[a]
	if l != r {
		return l < r
	}
	return a < b
}
func (h *strideHeap) Swap(i, j int) { h.pos[i], h.pos[j] = h.pos[j], h.pos[i] }
func (h *strideHeap) Push(any)      { panic("lb: strideHeap.Push is not used") }
func (h *strideHeap) Pop() any      { panic("lb: strideHeap.Pop is not used") }

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
