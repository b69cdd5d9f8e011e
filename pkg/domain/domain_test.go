package domain

import "testing"

func TestMatch(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		host    string
		want    bool
	}{
		{"exact", "api.example.com", "api.example.com", true},
		{"exact case and dot", "API.example.com", "api.EXAMPLE.com.", true},
		{"exact other", "api.example.com", "www.example.com", false},
		{"exact no subdomain", "example.com", "api.example.com", false},
		{"wildcard one label", "*.example.com", "api.example.com", true},
		{"wildcard not bare", "*.example.com", "example.com", false},
		{"wildcard not deeper", "*.example.com", "a.b.example.com", false},
		{"wildcard suffix boundary", "*.example.com", "apiexample.com", false},
		{"double wildcard deep", "**.example.com", "a.b.example.com", true},
		{"double wildcard one", "**.example.com", "a.example.com", true},
		{"double wildcard not bare", "**.example.com", "example.com", false},
		{"double wildcard boundary", "**.example.com", "badexample.com", false},
		{"empty host", "*.example.com", "", false},
		{"empty pattern", "", "example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Match(tt.pattern, tt.host); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
			}
		})
	}
}

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"api.example.com", true},
		{"*.example.com", true},
		{"**.example.com", true},
		{"*.com", false},
		{"*", false},
		{"a..b", false},
		{"-a.com", false},
		{"exa mple.com", false},
		{"api.example.com/path", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			err := ValidatePattern(tt.pattern)
			if (err == nil) != tt.ok {
				t.Errorf("ValidatePattern(%q) = %v, want ok=%v", tt.pattern, err, tt.ok)
			}
		})
	}
}
