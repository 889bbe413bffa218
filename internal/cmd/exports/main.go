// Command exports counts the exported identifiers of the module's public
// packages — funcs, methods on exported types, types, vars, consts and
// struct fields are counted apart — so that the size of the public surface
// is a number that can be compared across changes.
//
// Usage, from the module root:
//
//	go run ./internal/cmd/exports [-list]
//
// The list of the module's exported identifiers is kept in api.txt beside
// this file, and a test fails when the surface differs from it, so that
// every change to the public API is a deliberate one that shows in review.
// After such a change, write the file anew:
//
//	go run ./internal/cmd/exports -list > internal/cmd/exports/api.txt
//
// Packages under internal/, cmd/, examples/ and bench/, package main and
// test files are left out.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	list := flag.Bool("list", false, "print every exported identifier, then the counts")
	flag.Parse()
	names, counts, err := surface(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "exports:", err)
		os.Exit(1)
	}
	if *list {
		for _, n := range names {
			fmt.Println(n)
		}
	}
	fmt.Println(summary(counts))
}

// summary renders the counts on one line.
func summary(counts map[string]int) string {
	var b strings.Builder
	total := 0
	for _, k := range []string{"func", "method", "type", "var", "const"} {
		fmt.Fprintf(&b, "%s %d, ", k, counts[k])
		total += counts[k]
	}
	fmt.Fprintf(&b, "total %d (and %d exported struct fields)", total, counts["field"])
	return b.String()
}

// surface walks the module rooted at root and returns its exported
// identifiers, sorted, one "kind package.name" line each, and their counts
// by kind.
func surface(root string) ([]string, map[string]int, error) {
	counts := map[string]int{}
	var names []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			if rel != "." && (skipDir(rel) || hasGoMod(path)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		if pkg == "." {
			pkg = "recourse"
		}
		add := func(kind, name string) {
			counts[kind]++
			names = append(names, fmt.Sprintf("%-8s %s.%s", kind, pkg, name))
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					add("func", d.Name.Name)
				} else if recv := recvName(d.Recv.List[0].Type); ast.IsExported(recv) {
					add("method", recv+"."+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						add("type", s.Name.Name)
						if st, ok := s.Type.(*ast.StructType); ok {
							for _, fld := range st.Fields.List {
								for _, n := range fld.Names {
									if n.IsExported() {
										add("field", s.Name.Name+"."+n.Name)
									}
								}
							}
						}
					case *ast.ValueSpec:
						kind := "var"
						if d.Tok == token.CONST {
							kind = "const"
						}
						for _, n := range s.Names {
							if n.IsExported() {
								add(kind, n.Name)
							}
						}
					}
				}
			}
		}
		return nil
	})
	sort.Strings(names)
	return names, counts, err
}

func skipDir(path string) bool {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") || base == "testdata" {
		return true
	}
	top := strings.Split(filepath.ToSlash(path), "/")[0]
	return top == "internal" || top == "cmd" || top == "examples" || top == "bench" || base == "internal"
}

func hasGoMod(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}

func recvName(t ast.Expr) string {
	switch x := t.(type) {
	case *ast.StarExpr:
		return recvName(x.X)
	case *ast.IndexExpr:
		return recvName(x.X)
	case *ast.IndexListExpr:
		return recvName(x.X)
	case *ast.Ident:
		return x.Name
	}
	return ""
}
