package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// maglevTable builds a maglev Set and returns its table as backend addresses' indices.
func maglevTable(t *testing.T, bs []Backend, size int) (*Set, []uint16) {
	t.Helper()
	s := mustBuild(t, Spec{Scheduler: SchedMaglev, Backends: bs, MaglevSize: size}, nil)
	return s, s.table
}

// TestMaglevDisruption removes one of N backends and checks the paper's minimal disruption:
// every entry of the removed backend moves, about 1/N of the table moves in all, and only a
// small share of the other entries moves.
func TestMaglevDisruption(t *testing.T) {
	for _, n := range []int{10, 100, 1000} {
		for _, removed := range []int{0, n / 2, n - 1} {
			t.Run(fmt.Sprintf("n=%d/remove=%d", n, removed), func(t *testing.T) {
				bs := backends(slices.Repeat([]int{1}, n)...)
				before, t1 := maglevTable(t, bs, DefaultMaglevSize)
				// Rebuild without the backend (and in another order: it must not matter).
				rest := slices.Delete(slices.Clone(bs), removed, removed+1)
				slices.Reverse(rest)
				after, t2 := maglevTable(t, rest, DefaultMaglevSize)
				moved, others, othersMoved := 0, 0, 0
				for i := range t1 {
					a1, a2 := before.backends[t1[i]].Addr, after.backends[t2[i]].Addr
					if a2 == addr(removed) {
						t.Fatalf("entry %d still points at the removed backend", i)
					}
					if a1 != a2 {
						moved++
					}
					if a1 != addr(removed) {
						others++
						if a1 != a2 {
							othersMoved++
						}
					}
				}
				share := float64(moved) / float64(len(t1))
				otherShare := float64(othersMoved) / float64(others)
				t.Logf("moved %.4f of the table (1/N = %.4f), %.4f of other backends' entries", share, 1/float64(n), otherShare)
				if share < 0.8/float64(n) || share > 1.5/float64(n)+0.01 {
					t.Errorf("moved share %.4f, want about 1/N = %.4f", share, 1/float64(n))
				}
				if otherShare > 0.02 {
					t.Errorf("%.4f of entries of remaining backends moved, want < 2%%", otherShare)
				}
			})
		}
	}
}

// TestMaglevWeights checks that table shares follow weights, including extreme ratios that
// stress the turn scheduling.
func TestMaglevWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	random := make([]int, 200)
	for i := range random {
		random[i] = 1 + rng.IntN(100)
	}
	heavy := slices.Repeat([]int{1}, 500)
	heavy[7] = 1000
	tests := []struct {
		name    string
		weights []int
		tol     float64 // relative
	}{
		{"1-2-3-4", []int{1, 2, 3, 4}, 0.01},
		{"equal-10", slices.Repeat([]int{3}, 10), 0.01},
		{"random-200", random, 0.05},
		{"one-heavy", heavy, 0.05},
		{"with-zero", []int{1, 0, 1, 2}, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, table := maglevTable(t, backends(tt.weights...), DefaultMaglevSize)
			counts := make([]int, len(tt.weights))
			for _, i := range table {
				counts[i]++
			}
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			worst := 0.0
			for i, w := range tt.weights {
				want := float64(w) / float64(sum) * float64(len(table))
				if w == 0 {
					if counts[i] != 0 {
						t.Errorf("weight-0 backend %d has %d entries", i, counts[i])
					}
					continue
				}
				worst = max(worst, math.Abs(float64(counts[i])-want)/want)
			}
			t.Logf("worst relative deviation %.4f over %d backends", worst, s.Eligible())
			if worst > tt.tol {
				t.Errorf("worst relative deviation from weights %.4f, want <= %.2f", worst, tt.tol)
			}
		})
	}
}

// TestMaglevSmallTables checks the edge sizes: every entry is filled with an eligible backend
// and every backend that fits gets an entry.
func TestMaglevSmallTables(t *testing.T) {
	for _, tc := range []struct{ n, m int }{{1, 2}, {2, 2}, {3, 3}, {5, 7}, {13, 13}, {100, 101}} {
		_, table := maglevTable(t, backends(slices.Repeat([]int{1}, tc.n)...), tc.m)
		seen := map[uint16]int{}
		for _, i := range table {
			if int(i) >= tc.n {
				t.Fatalf("n=%d m=%d: entry %d", tc.n, tc.m, i)
			}
			seen[i]++
		}
		if len(seen) != tc.n {
			t.Errorf("n=%d m=%d: only %d backends in the table", tc.n, tc.m, len(seen))
		}
	}
}

func TestIsPrime(t *testing.T) {
	var got []int
	for n := -1; n < 40; n++ {
		if isPrime(n) {
			got = append(got, n)
		}
	}
	if want := []int{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37}; !slices.Equal(got, want) {
		t.Errorf("primes below 40: %v", got)
	}
	for n, want := range map[int]bool{65537: true, 65536: false, 16777213: true, 16777215: false, 65537 * 257: false} {
		if isPrime(n) != want {
			t.Errorf("isPrime(%d) = %v", n, !want)
		}
	}
}
