package admin

import "github.com/edgegate/edgegate/bgp"

// BGPStatus returns the BGP speaker's status, or nil when the node runs none.
type BGPStatus func() *bgp.Status

// SetBGP installs what /status reports of the BGP speaker (nil: nothing).
func (s *Server) SetBGP(f BGPStatus) { s.bgp.Store(&f) }

func (s *Server) bgpStatus() *bgp.Status {
	if f := s.bgp.Load(); f != nil && *f != nil {
		return (*f)()
	}
	return nil
}
