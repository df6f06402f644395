package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// The decoder walks the yaml.Node tree alongside the Go types instead of calling yaml.v3's
// Decode on the whole document: that way every unknown key, wrong type and invalid value is
// reported with its line and column (yaml.v3 reports only lines, and stops at the first
// TextUnmarshaler error), all problems are collected, and the node of every decoded value is
// remembered so validation can point at it. Scalars are still converted by yaml.v3 itself.

const (
	// minNodeBudget and nodeBudgetRatio bound the values decoded, aliases expanded, to
	// max(minNodeBudget, nodeBudgetRatio × the nodes written in the file): generous for sharing
	// backend lists through anchors, cheap against exponential alias bombs.
	minNodeBudget   = 200_000
	nodeBudgetRatio = 10
	maxErrors       = 200 // enough for any real file; bounds output on garbage
)

// nodeBudget returns how many values may be decoded from the document rooted at n.
func nodeBudget(n *yaml.Node) int {
	count := 0
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		count++
		if n.Kind != yaml.AliasNode {
			for _, c := range n.Content {
				walk(c)
			}
		}
	}
	walk(n)
	return max(minNodeBudget, nodeBudgetRatio*count)
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

type decoder struct {
	file   string
	errs   Errors
	pos    map[any]*yaml.Node // pointer to a decoded value -> its node
	nodes  int
	budget int // see nodeBudget
	noPos  int // >0 while decoding into temporaries (map values) whose address is not kept
	capped bool
	// bad marks nodes that failed to decode; validation stays silent about them because the
	// zero value left behind would only produce a second, misleading message.
	bad        map[*yaml.Node]bool
	validating bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: make(map[any]*yaml.Node), bad: make(map[*yaml.Node]bool), budget: minNodeBudget}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	if d.validating && d.bad[n] {
		return
	}
	if !d.validating && n != nil {
		d.bad[n] = true
	}
	if len(d.errs) >= maxErrors {
		if !d.capped {
			d.capped = true
			d.errs = append(d.errs, &Error{File: d.file, Msg: fmt.Sprintf("too many errors (more than %d), stopping", maxErrors)})
		}
		return
	}
	e := &Error{File: d.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// node returns the node a value was decoded from, or nil when it came from no YAML.
func (d *decoder) node(ptr any) *yaml.Node { return d.pos[ptr] }

// set says whether the YAML gave a (non-null) value for the field behind ptr.
func (d *decoder) set(ptr any) bool {
	n := d.pos[ptr]
	return n != nil && n.ShortTag() != "!!null"
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

var leafCache sync.Map // reflect.Type -> bool

// isLeaf says whether values of t are decoded from one scalar by yaml.v3 (basic kinds and
// types with their own unmarshalers). Cached: reflection's Implements is slow.
func isLeaf(t reflect.Type) bool {
	if v, ok := leafCache.Load(t); ok {
		return v.(bool)
	}
	leaf := computeLeaf(t)
	leafCache.Store(t, leaf)
	return leaf
}

func computeLeaf(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map, reflect.Pointer, reflect.Interface:
		return false
	}
	return true
}

// decode fills v (addressable) from n; path names the value in messages ("services[0].name").
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if n == nil || n.Kind == yaml.AliasNode {
		d.errorf(nil, "%s: unresolvable alias", path)
		return
	}
	d.nodes++
	if d.nodes > d.budget {
		if d.nodes == d.budget+1 {
			d.errorf(n, "document too large (more than %d values after alias expansion)", d.budget)
		}
		return
	}
	if d.noPos == 0 {
		d.pos[v.Addr().Interface()] = n
	}
	t := v.Type()
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	if isLeaf(t) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "%s: want %s, got %s", path, typeDesc(t), kindName(n))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.errorf(n, "%s: %s", path, leafError(err, t, n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if null {
			v.SetZero()
			return
		}
		nv := reflect.New(t.Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		if null {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, "%s: want a mapping, got %s", orRoot(path), kindName(n))
			return
		}
		d.decodeStruct(n, v, path, 0)
	case reflect.Slice:
		if null || (n.Kind == yaml.SequenceNode && len(n.Content) == 0) {
			v.SetZero() // [] and null both mean "none": one representation keeps Effective round-trips exact
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%s: want a list, got %s", path, kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if null || (n.Kind == yaml.MappingNode && len(n.Content) == 0) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, "%s: want a mapping, got %s", path, kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := make(map[string]*yaml.Node)
		d.noPos++
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := resolveAlias(n.Content[i]), n.Content[i+1]
			if kn == nil || kn.Kind != yaml.ScalarNode {
				d.errorf(n.Content[i], "%s: keys must be scalars", path)
				continue
			}
			if first, dup := seen[kn.Value]; dup {
				d.errorf(kn, "%s: duplicate key %q (first at line %d)", path, kn.Value, first.Line)
				continue
			}
			seen[kn.Value] = kn
			k := reflect.New(t.Key()).Elem()
			d.decode(kn, k, path)
			e := reflect.New(t.Elem()).Elem()
			d.decode(vn, e, path+"."+kn.Value)
			m.SetMapIndex(k, e)
		}
		d.noPos--
		v.Set(m)
	default:
		d.errorf(n, "%s: unsupported type %s", path, t)
	}
}

func orRoot(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

// decodeStruct fills the fields of struct v from mapping n. Merge keys ("<<") are applied first
// so explicit keys override them, as YAML specifies.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) {
	fi := fieldsOf(v.Type())
	seen := make(map[string]*yaml.Node)
	prefix := path
	if prefix != "" {
		prefix += "."
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn := n.Content[i]
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			if depth > 8 {
				d.errorf(kn, "%s: merge keys nested too deeply", orRoot(path))
				continue
			}
			vn := resolveAlias(n.Content[i+1])
			var srcs []*yaml.Node
			if vn != nil && vn.Kind == yaml.SequenceNode {
				srcs = vn.Content
			} else {
				srcs = []*yaml.Node{vn}
			}
			// Earlier mappings in a merge list win (YAML merge key spec): apply them last.
			for j := len(srcs) - 1; j >= 0; j-- {
				s := resolveAlias(srcs[j])
				if s == nil || s.Kind != yaml.MappingNode {
					d.errorf(kn, "%s: merge key value must be a mapping or a list of mappings", orRoot(path))
					continue
				}
				d.decodeStruct(s, v, path, depth+1)
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := resolveAlias(n.Content[i]), n.Content[i+1]
		if kn == nil || kn.Kind != yaml.ScalarNode {
			d.errorf(n.Content[i], "%s: keys must be strings", orRoot(path))
			continue
		}
		if kn.ShortTag() == "!!merge" {
			continue
		}
		if first, dup := seen[kn.Value]; dup {
			d.errorf(kn, "%s%s: duplicate key (first at line %d)", prefix, kn.Value, first.Line)
			continue
		}
		seen[kn.Value] = kn
		idx, ok := fi.index[kn.Value]
		if !ok && depth == 0 && path == "" && strings.HasPrefix(kn.Value, "x-") {
			continue // top-level "x-" keys hold YAML anchors for reuse, as in Compose files
		}
		if !ok {
			if near := closest(kn.Value, fi.names); near != "" {
				d.errorf(kn, "%s: unknown key %q (did you mean %q?)", orRoot(path), kn.Value, near)
			} else {
				d.errorf(kn, "%s: unknown key %q (known: %s)", orRoot(path), kn.Value, strings.Join(fi.names, ", "))
			}
			continue
		}
		d.decode(vn, v.Field(idx), prefix+kn.Value)
	}
}

type fieldInfo struct {
	index map[string]int
	names []string
}

var fieldCache sync.Map // reflect.Type -> *fieldInfo

func fieldsOf(t reflect.Type) *fieldInfo {
	if fi, ok := fieldCache.Load(t); ok {
		return fi.(*fieldInfo)
	}
	fi := &fieldInfo{index: make(map[string]int)}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fi.index[name] = i
		fi.names = append(fi.names, name)
	}
	slices.Sort(fi.names)
	fieldCache.Store(t, fi)
	return fi
}

func typeDesc(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a duration such as \"30s\""
	case reflect.TypeFor[PortRange]():
		return "a port range such as \"1024-65535\""
	}
	if t.PkgPath() == "net/netip" {
		switch t.Name() {
		case "Addr":
			return "an IP address"
		case "Prefix":
			return "an IP prefix such as \"192.0.2.0/24\""
		case "AddrPort":
			return "an address and port such as \"198.18.0.1:4790\""
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return fmt.Sprintf("an integer 0..%d", uint64(1)<<(t.Bits())-1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// leafError turns a scalar conversion error into a message without yaml.v3's "line N:" prefix.
func leafError(err error, t reflect.Type, n *yaml.Node) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s, got %q", typeDesc(t), n.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if t.PkgPath() == "net/netip" {
		return fmt.Sprintf("want %s, got %q", typeDesc(t), n.Value)
	}
	return msg
}

// closest returns the name within a small edit distance of key (a likely typo), or "".
func closest(key string, names []string) string {
	best, bestD := "", max(1, len(key)/4)+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(key), n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions, deletions, substitutions
// and transpositions of adjacent bytes each cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a key; keeps the cost bounded
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
