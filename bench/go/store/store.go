// Package store is the in-memory data of the Go benchmark peers (bench/go/gin,
// bench/go/nethttp): json-server collections held as decoded documents in a
// map guarded by one sync.RWMutex, the way a small Go JSON API is usually
// written. Replies are encoded per request by the HTTP layer (encoding/json).
//
// Built in GOPATH mode against Debian's /usr/share/gocode (see bench/run.sh):
// only the standard library here.
package store

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Doc is one JSON document as encoding/json decodes it by default (numbers
// are float64; the benchmark's integers are far below 2^53).
type Doc = map[string]any

type coll struct {
	byID  map[string]Doc
	order []string // ids in insertion order
	maxID int64
}

// Store is every collection of a db.json.
type Store struct {
	mu    sync.RWMutex
	colls map[string]*coll
}

// Load reads a json-server db.json: {"name": [docs...], ...}.
func Load(path string) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	var db map[string][]Doc
	if err := dec.Decode(&db); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Store{colls: map[string]*coll{}}
	for name, docs := range db {
		c := &coll{byID: make(map[string]Doc, len(docs)), order: make([]string, 0, len(docs))}
		for _, d := range docs {
			id := idString(d["id"])
			if id == "" {
				continue
			}
			if _, dup := c.byID[id]; !dup {
				c.order = append(c.order, id)
			}
			c.byID[id] = d
			if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > c.maxID {
				c.maxID = n
			}
		}
		s.colls[name] = c
	}
	return s, nil
}

func idString(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	}
	return ""
}

// Get returns the document, or nil.
func (s *Store) Get(name, id string) Doc {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.colls[name]
	if c == nil {
		return nil
	}
	return c.byID[id]
}

// Insert stores a new document, giving it the next integer id when it has none.
// false: the id exists.
func (s *Store) Insert(name string, d Doc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[name]
	if c == nil {
		c = &coll{byID: map[string]Doc{}}
		s.colls[name] = c
	}
	id := idString(d["id"])
	if id == "" {
		c.maxID++
		id = strconv.FormatInt(c.maxID, 10)
		d["id"] = float64(c.maxID)
	} else if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > c.maxID {
		c.maxID = n
	}
	if _, dup := c.byID[id]; dup {
		return false
	}
	c.byID[id] = d
	c.order = append(c.order, id)
	return true
}

// Query is the json-server list dialect the benchmark uses: field=value
// (equality, OR over repeats), _sort, _order, _start, _end, _limit, _page.
// Filter values are classified once per request (number or text), so
// matching compares float64s or strings without converting per document.
type Query struct {
	filters []filter
	sortKey string
	desc    bool
	start   int
	end     int // -1: none
	limit   int // -1: none
	page    int // 0: none
}

type fval struct {
	text  string
	num   float64
	isNum bool
}

type filter struct {
	key  string
	vals []fval
}

// ParseQuery reads the query from URL values.
func ParseQuery(get func(string) []string, keys []string) Query {
	q := Query{end: -1, limit: -1}
	atoi := func(k string) int {
		v := get(k)
		if len(v) == 0 {
			return -1
		}
		n, err := strconv.Atoi(v[0])
		if err != nil {
			return -1
		}
		return n
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "_") {
			continue
		}
		f := filter{key: k}
		for _, v := range get(k) {
			n, err := strconv.ParseFloat(v, 64)
			f.vals = append(f.vals, fval{text: v, num: n, isNum: err == nil})
		}
		q.filters = append(q.filters, f)
	}
	if v := get("_sort"); len(v) > 0 {
		q.sortKey = v[0]
	}
	if v := get("_order"); len(v) > 0 {
		q.desc = strings.EqualFold(v[0], "desc")
	}
	if n := atoi("_start"); n > 0 {
		q.start = n
	}
	q.end = atoi("_end")
	q.limit = atoi("_limit")
	if n := atoi("_page"); n > 0 {
		q.page = n
	}
	return q
}

func matches(v any, vals []fval) bool {
	for _, f := range vals {
		switch x := v.(type) {
		case float64:
			if f.isNum && x == f.num {
				return true
			}
		case string:
			if x == f.text {
				return true
			}
		case bool:
			if strconv.FormatBool(x) == f.text {
				return true
			}
		case nil:
			if f.text == "null" {
				return true
			}
		}
	}
	return false
}

// less orders numbers before strings, numbers numerically, strings bytewise.
func less(a, b any) bool {
	fa, oka := a.(float64)
	fb, okb := b.(float64)
	switch {
	case oka && okb:
		return fa < fb
	case oka != okb:
		return oka
	}
	sa, _ := a.(string)
	sb, _ := b.(string)
	return sa < sb
}

// List returns the selected page and the number of matches before paging.
func (s *Store) List(name string, q Query) ([]Doc, int, bool) {
	s.mu.RLock()
	c := s.colls[name]
	if c == nil {
		s.mu.RUnlock()
		return nil, 0, false
	}
	var out []Doc
	if len(q.filters) == 0 {
		out = make([]Doc, 0, len(c.order))
	}
	for _, id := range c.order {
		d := c.byID[id]
		ok := true
		for i := range q.filters {
			if !matches(d[q.filters[i].key], q.filters[i].vals) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, d)
		}
	}
	s.mu.RUnlock()
	if q.sortKey != "" {
		k := q.sortKey
		sort.SliceStable(out, func(i, j int) bool {
			if q.desc {
				return less(out[j][k], out[i][k])
			}
			return less(out[i][k], out[j][k])
		})
	}
	total := len(out)
	from, to := 0, total
	switch {
	case q.page > 0:
		lim := q.limit
		if lim < 0 {
			lim = 10
		}
		from, to = (q.page-1)*lim, q.page*lim
	case q.end >= 0:
		from, to = q.start, q.end
	case q.limit >= 0:
		from, to = q.start, q.start+q.limit
	default:
		from = q.start
	}
	if from > total {
		from = total
	}
	if to > total {
		to = total
	}
	if to < from {
		to = from
	}
	return out[from:to], total, true
}
