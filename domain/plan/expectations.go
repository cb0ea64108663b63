package plan

// Health checks, wait.until and http steps take the smoke tests' expect
// block (Expect, validated by the same checker.expect): status, JSON paths,
// headers, body, latency. Their older expect_status field still gives the
// status; a plan writes the status in one of the two places.

// Expectation is what the health check's response must show: Expect, with
// expect_status as its status when expect.status is not written.
func (h HealthCheck) Expectation() Expect { return withStatus(h.Expect, h.ExpectStatus) }

// Expectation is what the wait's response must show before it ends: Expect,
// with expect_status as its status when expect.status is not written.
func (u WaitUntil) Expectation() Expect { return withStatus(u.Expect, u.ExpectStatus) }

// Expectation is what the http step's response must show: Expect, with
// expect_status as its status when expect.status is not written.
func (h HTTPStep) Expectation() Expect { return withStatus(h.Expect, h.ExpectStatus) }

func withStatus(e Expect, status int) Expect {
	if e.Status == 0 {
		e.Status = status
	}
	return e
}

// IsZero reports whether e asserts nothing beyond the default (any 2xx).
func (e Expect) IsZero() bool {
	return e.Status == 0 && e.MaxMS == 0 && len(e.JSON) == 0 && len(e.JSONMatch) == 0 && len(e.JSONAbsent) == 0 &&
		len(e.Headers) == 0 && len(e.HeadersMatch) == 0 && len(e.BodyContains) == 0
}

// responseExpect checks the expect block of a health check, wait.until or
// http step at path (the mapping holding expect_status and expect).
func (c *checker) responseExpect(path string, status int, e Expect) {
	c.status(joinKey(path, "expect_status"), status)
	c.expect(joinKey(path, "expect"), e)
	if c.set(joinKey(path, "expect_status")) && c.set(joinKey(path, "expect.status")) {
		c.errorf(joinKey(path, "expect.status"), "expect_status and expect.status both give the status: write it once, as expect.status")
	}
}
