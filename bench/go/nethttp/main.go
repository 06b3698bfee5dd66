// bench/go/nethttp: the net/http + encoding/json peer of cairnd's benchmark
// (bench/run.sh). The same routes as cairnd's collections API under /v1, data
// in bench/go/store (a map behind a sync.RWMutex), replies encoded per request
// with json.NewEncoder. Go 1.19's ServeMux has no path parameters: the path is
// split by hand.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"

	"cairnbench/store"
)

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	db := flag.String("db", "db.json", "json-server db.json")
	flag.Parse()
	st, err := store.Load(*db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	notFound := map[string]string{"error": "not found"}
	http.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
		switch {
		case len(parts) == 2 && r.Method == http.MethodGet:
			d := st.Get(parts[0], parts[1])
			if d == nil {
				reply(w, http.StatusNotFound, notFound)
				return
			}
			reply(w, http.StatusOK, d)
		case len(parts) == 1 && r.Method == http.MethodGet:
			vals := r.URL.Query()
			keys := make([]string, 0, len(vals))
			for k := range vals {
				keys = append(keys, k)
			}
			q := store.ParseQuery(func(k string) []string { return vals[k] }, keys)
			docs, total, ok := st.List(parts[0], q)
			if !ok {
				reply(w, http.StatusNotFound, notFound)
				return
			}
			w.Header().Set("X-Total-Count", strconv.Itoa(total))
			reply(w, http.StatusOK, docs)
		case len(parts) == 1 && r.Method == http.MethodPost:
			var d store.Doc
			if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d == nil {
				reply(w, http.StatusBadRequest, map[string]string{"error": "a JSON object body is required"})
				return
			}
			if !st.Insert(parts[0], d) {
				reply(w, http.StatusConflict, map[string]string{"error": "id exists"})
				return
			}
			reply(w, http.StatusCreated, d)
		default:
			reply(w, http.StatusNotFound, notFound)
		}
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "net/http (%s) listening on %s\n", runtime.Version(), ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
