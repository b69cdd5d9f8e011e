package audit

import (
	"context"
	"testing"
)

// BenchmarkAppend measures Append as the proxy uses it: asynchronous, with
// the writer's group commit. Close is timed too, so every record appended
// is also written and fsynced within the measurement.
func BenchmarkAppend(b *testing.B) {
	l, err := OpenFile(testPath(b), testKey(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := sample(2)
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendParallel is BenchmarkAppend with appenders on every CPU,
// as under many concurrent proxied requests.
func BenchmarkAppendParallel(b *testing.B) {
	l, err := OpenFile(testPath(b), testKey(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := sample(2)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendSync is one caller waiting for each record's fsync, the
// cost a vault change pays.
func BenchmarkAppendSync(b *testing.B) {
	l, err := OpenFile(testPath(b), testKey(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := sample(1)
	for b.Loop() {
		if err := l.AppendSync(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}
