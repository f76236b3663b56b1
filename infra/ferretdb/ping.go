package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"
)

// errNotOK: the server answered, with an error (for example its backend is down).
var errNotOK = errors.New("reply has ok != 1")

// ping sends the MongoDB command {ping: 1, $db: "admin"} as an OP_MSG to addr and checks
// that the reply has ok: 1. It is a real round trip through FerretDB's command handling
// (and so its backend connection), without a MongoDB driver dependency: the readiness
// check of scripts/infra/ferretdb.sh. Only what a ping needs of the wire protocol is encoded.
func ping(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err = conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}

	// BSON document {ping: int32(1), $db: "admin"}.
	var doc bytes.Buffer
	doc.WriteByte(0x10) // int32
	doc.WriteString("ping\x00")
	_ = binary.Write(&doc, binary.LittleEndian, int32(1))
	doc.WriteByte(0x02) // string
	doc.WriteString("$db\x00")
	_ = binary.Write(&doc, binary.LittleEndian, int32(len("admin")+1))
	doc.WriteString("admin\x00")
	doc.WriteByte(0x00)
	body := make([]byte, 4, 4+doc.Len())
	binary.LittleEndian.PutUint32(body, uint32(4+doc.Len()))
	body = append(body, doc.Bytes()...)

	// OP_MSG: header (length, requestID, responseTo, opCode 2013), flagBits, section kind 0.
	var msg bytes.Buffer
	_ = binary.Write(&msg, binary.LittleEndian, int32(16+4+1+len(body)))
	_ = binary.Write(&msg, binary.LittleEndian, int32(1))
	_ = binary.Write(&msg, binary.LittleEndian, int32(0))
	_ = binary.Write(&msg, binary.LittleEndian, int32(2013))
	_ = binary.Write(&msg, binary.LittleEndian, uint32(0))
	msg.WriteByte(0)
	msg.Write(body)
	if _, err = conn.Write(msg.Bytes()); err != nil {
		return err
	}

	header := make([]byte, 16)
	if _, err = io.ReadFull(conn, header); err != nil {
		return err
	}
	length := int(binary.LittleEndian.Uint32(header))
	if length < 16+4+1+5 || length > 16<<20 {
		return fmt.Errorf("bad reply length %d", length)
	}
	rest := make([]byte, length-16)
	if _, err = io.ReadFull(conn, rest); err != nil {
		return err
	}
	if opCode := binary.LittleEndian.Uint32(header[12:]); opCode != 2013 || rest[4] != 0 {
		return fmt.Errorf("unexpected reply (opCode %d)", opCode)
	}

	// Walk the reply document's elements looking for a numeric "ok".
	d := rest[5:]
	for i := 4; i < len(d) && d[i] != 0; {
		typ := d[i]
		end := bytes.IndexByte(d[i+1:], 0)
		if end < 0 {
			break
		}
		name := string(d[i+1 : i+1+end])
		v := d[i+2+end:]
		var size int
		switch typ {
		case 0x01: // double
			if name == "ok" {
				if math.Float64frombits(binary.LittleEndian.Uint64(v)) == 1 {
					return nil
				}
				return errNotOK
			}
			size = 8
		case 0x10: // int32
			if name == "ok" {
				if int32(binary.LittleEndian.Uint32(v)) == 1 {
					return nil
				}
				return errNotOK
			}
			size = 4
		case 0x12, 0x09, 0x11: // int64, datetime, timestamp
			size = 8
		case 0x08: // bool
			size = 1
		case 0x0A: // null
			size = 0
		case 0x02: // string
			size = 4 + int(binary.LittleEndian.Uint32(v))
		case 0x03, 0x04: // document, array
			size = int(binary.LittleEndian.Uint32(v))
		default:
			return fmt.Errorf("reply: cannot skip BSON type 0x%02x of %q", typ, name)
		}
		i += 2 + end + size
	}
	return errors.New("reply has no ok field")
}
