// Parses and compiles syzkaller's Linux descriptions plus the TCP-AO file, with the
// constants of the existing .const files and of tcp_ao.const (from the 7.2 headers).
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/syzkaller/pkg/ast"
	"github.com/google/syzkaller/pkg/compiler"
	"github.com/google/syzkaller/prog"
	"github.com/google/syzkaller/sys/targets"
)

func main() {
	target := targets.Get("linux", "amd64")
	eh := func(pos ast.Pos, msg string) { fmt.Fprintf(os.Stderr, "%v: %v\n", pos, msg) }
	desc := ast.ParseGlob("sys/linux/*.txt", eh)
	if desc == nil {
		fmt.Println("parse failed")
		os.Exit(1)
	}
	info := compiler.ExtractConsts(desc, target, eh)
	if info == nil {
		fmt.Println("const extraction failed")
		os.Exit(1)
	}
	consts := compiler.DeserializeConstFile("sys/linux/*.const", eh)
	if consts == nil {
		fmt.Println("reading .const files failed")
		os.Exit(1)
	}
	ours := map[string]uint64{}
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kv := strings.SplitN(sc.Text(), "=", 2)
		if len(kv) != 2 {
			continue
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(kv[1]), 0, 64)
		ours[strings.TrimSpace(kv[0])] = v
	}
	missing := 0
	for file, ci := range info {
		if filepath.Base(file) != "socket_inet_tcp_ao.txt" {
			continue
		}
		for _, c := range ci.Consts {
			if _, ok := ours[c.Name]; !ok && consts.Arch("amd64")[c.Name] == 0 {
				fmt.Printf("missing const %v\n", c.Name)
				missing++
			}
		}
	}
	if missing > 0 {
		os.Exit(1)
	}
	flat := consts.Arch("amd64")
	for k, v := range ours {
		flat[k] = v
	}
	res := compiler.Compile(desc, flat, target, eh)
	if res == nil {
		fmt.Println("compile failed")
		os.Exit(1)
	}
	n := 0
	for _, s := range res.Syscalls {
		if strings.Contains(s.Name, "TCP_AO") || strings.Contains(s.Name, "MD5SIG_EXT") {
			n++
			size := "?"
			at := s.Args[3].Type
			if r, ok := at.(prog.Ref); ok {
				at = res.Types[r]
			}
			if pt, ok := at.(*prog.PtrType); ok {
				elem := pt.Elem
				if r, ok := elem.(prog.Ref); ok {
					elem = res.Types[r]
				}
				if elem.Varlen() {
					size = "varlen"
				} else {
					size = fmt.Sprint(elem.Size())
				}
			}
			fmt.Println("ok", s.Name, "optval size", size)
		}
	}
	fmt.Printf("compiled %d syscalls, %d from socket_inet_tcp_ao.txt\n", len(res.Syscalls), n)
}
