package notify

// Unexported senders, for the tests of the retry classification.
var (
	PostJSON = postJSON
	SendMail = sendMail
)
