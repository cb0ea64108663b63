package estimator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// The demo account, the one the seed's smoke-tests.js logs in with.
const (
	DemoEmail    = "test@company.com"
	DemoPassword = "test123"
)

// maxTokens bounds the tokens kept in memory; the oldest go first.
const maxTokens = 1000

// LoginRequest is the body of POST /api/v1/auth/login.
type LoginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// LoginResponse is the answer to a good login: a bearer token for the
// Authorization header of later requests.
type LoginResponse struct {
	Token     string `json:"token"`
	TokenType string `json:"tokenType"`
	ExpiresIn int    `json:"expiresIn"` // seconds
	User      User   `json:"user"`
}

// User is who a token belongs to.
type User struct {
	Email string `json:"email"`
}

// tokens are the issued bearer tokens, in issue order.
type tokens struct {
	order []string
	users map[string]string // token → email
}

// login answers POST /api/v1/auth/login: 200 with a fresh token for the demo
// account, 401 for anything else.
func (s *Server) login(w http.ResponseWriter, r *http.Request, _ Release) {
	var req LoginRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body: " + err.Error()})
		return
	}
	if req.Email != DemoEmail || req.Password != DemoPassword {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid email or password"})
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := "demo-" + hex.EncodeToString(b)
	s.mu.Lock()
	if s.tokens.users == nil {
		s.tokens.users = map[string]string{}
	}
	s.tokens.users[tok] = req.Email
	s.tokens.order = append(s.tokens.order, tok)
	if len(s.tokens.order) > maxTokens {
		delete(s.tokens.users, s.tokens.order[0])
		s.tokens.order = append([]string(nil), s.tokens.order[1:]...)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, LoginResponse{Token: tok, TokenType: "Bearer", ExpiresIn: 3600, User: User{Email: req.Email}})
}

// user is the account of the request's bearer token: ok false when the
// request has no Authorization header, known false when it has one that is
// not a token this server issued.
func (s *Server) user(r *http.Request) (email string, ok, known bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false, false
	}
	tok, isBearer := strings.CutPrefix(h, "Bearer ")
	if !isBearer {
		return "", true, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	email, known = s.tokens.users[strings.TrimSpace(tok)]
	return email, true, known
}

// me answers GET /api/v1/auth/me, which needs a token: 200 with its user,
// 401 without one or with a bad one.
func (s *Server) me(w http.ResponseWriter, r *http.Request, _ Release) {
	email, ok, known := s.user(r)
	if !ok || !known {
		unauthorized(w)
		return
	}
	writeJSON(w, http.StatusOK, User{Email: email})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="estimator"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required: POST /api/v1/auth/login first"})
}
