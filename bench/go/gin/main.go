// bench/go/gin: the gin peer of cairnd's benchmark (bench/run.sh). The same
// routes as cairnd's collections API under /v1, data in bench/go/store (a map
// behind a sync.RWMutex), replies encoded per request with c.JSON. gin.New()
// with Recovery only: gin.Default() also logs every request, which a
// production service behind a load balancer usually turns off.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

	"cairnbench/store"

	"github.com/gin-gonic/gin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	db := flag.String("db", "db.json", "json-server db.json")
	flag.Parse()
	st, err := store.Load(*db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	v1 := r.Group("/v1")
	v1.GET("/:name/:id", func(c *gin.Context) {
		d := st.Get(c.Param("name"), c.Param("id"))
		if d == nil {
			c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
			return
		}
		c.JSON(http.StatusOK, d)
	})
	v1.GET("/:name", func(c *gin.Context) {
		vals := c.Request.URL.Query()
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		q := store.ParseQuery(func(k string) []string { return vals[k] }, keys)
		docs, total, ok := st.List(c.Param("name"), q)
		if !ok {
			c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
			return
		}
		c.Header("X-Total-Count", strconv.Itoa(total))
		c.JSON(http.StatusOK, docs)
	})
	v1.POST("/:name", func(c *gin.Context) {
		var d store.Doc
		if err := json.NewDecoder(c.Request.Body).Decode(&d); err != nil || d == nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "a JSON object body is required"})
			return
		}
		if !st.Insert(c.Param("name"), d) {
			c.JSON(http.StatusConflict, gin.H{"error": "id exists"})
			return
		}
		c.JSON(http.StatusCreated, d)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gin %s listening on %s\n", gin.Version, ln.Addr())
	if err := http.Serve(ln, r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
