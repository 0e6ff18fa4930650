// emlcheck: a second, independent reader of the .eml files `message-archiver export`
// writes (Go's net/mail and mime/multipart, not Python's email package). For each file
// named on the command line it prints one JSON line: the headers it read, and every
// leaf part's content type, file name and decoded body.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"strings"
)

type part struct {
	ContentType string `json:"content_type"`
	Filename    string `json:"filename,omitempty"`
	Body        string `json:"body"`
}

type parsed struct {
	File      string   `json:"file"`
	From      string   `json:"from"`
	To        []string `json:"to"`
	Subject   string   `json:"subject"`
	Date      string   `json:"date"`
	MessageID string   `json:"message_id"`
	Parts     []part   `json:"parts"`
}

func decode(encoding string, body io.Reader) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(body))
	case "base64":
		return io.ReadAll(base64.NewDecoder(base64.StdEncoding, body))
	default:
		return io.ReadAll(body)
	}
}

func walk(contentType, encoding, disposition string, body io.Reader, out *[]part) error {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		reader := multipart.NewReader(body, params["boundary"])
		for {
			p, err := reader.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"),
				p.Header.Get("Content-Disposition"), p, out); err != nil {
				return err
			}
		}
	}
	data, err := decode(encoding, body)
	if err != nil {
		return err
	}
	filename := ""
	if disposition != "" {
		if _, dparams, err := mime.ParseMediaType(disposition); err == nil {
			filename = dparams["filename"]
		}
	}
	*out = append(*out, part{ContentType: mediaType, Filename: filename, Body: string(data)})
	return nil
}

func main() {
	words := new(mime.WordDecoder)
	for _, name := range os.Args[1:] {
		raw, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		message, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		result := parsed{File: name, MessageID: message.Header.Get("Message-Id")}
		if result.Subject, err = words.DecodeHeader(message.Header.Get("Subject")); err != nil {
			fmt.Fprintf(os.Stderr, "%s: subject: %v\n", name, err)
			os.Exit(1)
		}
		if from, err := mail.ParseAddress(message.Header.Get("From")); err == nil {
			result.From = from.Address
		} else {
			fmt.Fprintf(os.Stderr, "%s: from: %v\n", name, err)
			os.Exit(1)
		}
		if to, err := message.Header.AddressList("To"); err == nil {
			for _, address := range to {
				result.To = append(result.To, address.Address)
			}
		} else {
			fmt.Fprintf(os.Stderr, "%s: to: %v\n", name, err)
			os.Exit(1)
		}
		if date, err := message.Header.Date(); err == nil {
			result.Date = date.UTC().Format("2006-01-02T15:04:05Z")
		} else {
			fmt.Fprintf(os.Stderr, "%s: date: %v\n", name, err)
			os.Exit(1)
		}
		if err := walk(message.Header.Get("Content-Type"), message.Header.Get("Content-Transfer-Encoding"),
			"", message.Body, &result.Parts); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		line, _ := json.Marshal(result)
		fmt.Println(string(line))
	}
}
