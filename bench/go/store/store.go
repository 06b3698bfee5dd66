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

// Doc is one JSON document, numbers kept as json.Number so ids and counts
// round-trip exactly.
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
	dec.UseNumber()
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
	case json.Number:
		return x.String()
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
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
		d["id"] = json.Number(id)
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
// (equality on the value's text, OR over repeats), _sort, _order, _start,
// _end, _limit, _page.
type Query struct {
	filters map[string][]string
	sortKey string
	desc    bool
	start   int
	end     int // -1: none
	limit   int // -1: none
	page    int // 0: none
}

// ParseQuery reads the query from URL values.
func ParseQuery(get func(string) []string, keys []string) Query {
	q := Query{filters: map[string][]string{}, end: -1, limit: -1}
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
		if !strings.HasPrefix(k, "_") {
			q.filters[k] = get(k)
		}
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

func text(v any) string {
	switch x := v.(type) {
	case json.Number:
		return x.String()
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func less(a, b any) bool {
	na, oka := a.(json.Number)
	nb, okb := b.(json.Number)
	if oka && okb {
		fa, _ := na.Float64()
		fb, _ := nb.Float64()
		return fa < fb
	}
	return text(a) < text(b)
}

// List returns the selected page and the number of matches before paging.
func (s *Store) List(name string, q Query) ([]Doc, int, bool) {
	s.mu.RLock()
	c := s.colls[name]
	if c == nil {
		s.mu.RUnlock()
		return nil, 0, false
	}
	out := make([]Doc, 0, len(c.order))
	for _, id := range c.order {
		d := c.byID[id]
		ok := true
		for k, vals := range q.filters {
			t := text(d[k])
			hit := false
			for _, v := range vals {
				if t == v {
					hit = true
					break
				}
			}
			if !hit {
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
