-- Wireshark dissector for the x700 client protocol, version 1
-- (docs/PROTOCOL.md part 1: every byte it reads is described there).
--
-- Install: copy this file to ~/.local/lib/wireshark/plugins/ (README.md,
-- "Wireshark"), or load it for one run with `tshark -X lua_script:x700.lua`.
-- It registers the protocol `x700` on TCP port 7700 and UDP port 7700 (the
-- node's defaults); other ports through the `x700.tcp_port` and
-- `x700.udp_port` preferences or "Decode As".
--
-- What it shows: every frame of a TCP stream (frames split across segments
-- are reassembled, several frames in one segment are each shown) and every
-- LOOKUP frame of a UDP datagram; opcodes and statuses by name; numbers as
-- digits; each request linked to its answer by request id within its
-- connection. A frame it cannot make sense of is flagged with expert info,
-- never with a Lua error.

local x700 = Proto("x700", "x700 700-number translation protocol")

-- Limits from docs/PROTOCOL.md section 12.
local HEADER_BYTES = 12
-- The largest request frame a node can be configured to take; beyond it
-- (or below the header) the stream's framing is lost.
local FRAME_BYTES_MAX = 1048576
-- The largest answer frame (STATS).
local ANSWER_FRAME_BYTES_MAX = 65536
local DEFAULT_PORT = 7700

-- Section 6.
local OPCODES = {
    [0x01] = "HELLO",
    [0x02] = "PING",
    [0x03] = "STATS",
    [0x10] = "LOOKUP",
    [0x11] = "WAIT_INDEX",
    [0x20] = "BIND_AXB",
    [0x21] = "BIND_AXN",
    [0x22] = "BIND_AXE",
    [0x23] = "UPDATE",
    [0x24] = "UNBIND",
    [0x25] = "QUERY",
    [0x30] = "CLUSTER_STATUS",
    [0x31] = "CLUSTER_INIT",
    [0x32] = "CLUSTER_ADD_NODE",
    [0x33] = "CLUSTER_REMOVE_NODE",
    [0x34] = "CLUSTER_VERIFY",
}

-- Section 8.
local STATUSES = {
    [0] = "OK",
    [1] = "NOT_BOUND",
    [2] = "EXPIRED",
    [3] = "DIRECTION_DENIED",
    [4] = "NOT_A_PARTY",
    [5] = "BAD_NUMBER",
    [6] = "TENANT_SUSPENDED",
    [16] = "CONFLICT",
    [17] = "NOT_FOUND",
    [18] = "BAD_REQUEST",
    [32] = "BAD_FRAME",
    [33] = "UNKNOWN_OPCODE",
    [34] = "UNSUPPORTED_VERSION",
    [35] = "UNAUTHORISED",
    [36] = "BUSY",
    [37] = "NOT_LEADER",
    [38] = "DISK_FULL",
    [39] = "CAPACITY",
    [40] = "INTERNAL",
    [41] = "UNAVAILABLE",
    [42] = "OUTCOME_UNKNOWN",
    [43] = "BEHIND",
}

local ROLES = { [1] = "switch", [2] = "platform", [3] = "admin" }
local DIRECTIONS = { [0] = "both ways", [1] = "A to B only", [2] = "B to A only" }
local MODES = { [1] = "AXB", [2] = "AXN", [3] = "AXE" }
local KINDS = { [0] = "voice", [1] = "SMS" }
local SELECTORS = { [0] = "by id", [1] = "by X and number", [2] = "by X and extension" }

local f = x700.fields
f.length = ProtoField.uint32("x700.length", "Length", base.DEC)
f.opcode = ProtoField.uint8("x700.opcode", "Opcode", base.HEX, OPCODES)
f.status = ProtoField.uint8("x700.status", "Status", base.DEC, STATUSES)
f.reserved = ProtoField.bytes("x700.reserved", "Reserved")
f.request_id = ProtoField.uint32("x700.request_id", "Request id", base.DEC)
f.is_answer = ProtoField.bool("x700.answer", "Answer")
f.response_in = ProtoField.framenum("x700.response_in", "Answer in", base.NONE, frametype.RESPONSE)
f.request_in = ProtoField.framenum("x700.request_in", "Request in", base.NONE, frametype.REQUEST)
f.answer_time = ProtoField.relative_time("x700.time", "Time since request")
-- Numbers, as digits ("" for "no number").
f.x = ProtoField.string("x700.x", "X")
f.caller = ProtoField.string("x700.caller", "Caller")
f.callee = ProtoField.string("x700.callee", "Callee")
f.display = ProtoField.string("x700.display", "Display")
f.a = ProtoField.string("x700.a", "A")
f.b = ProtoField.string("x700.b", "B")
f.party = ProtoField.string("x700.party", "Party")
f.extension = ProtoField.string("x700.extension", "Extension")
-- Other body fields.
f.kind = ProtoField.uint8("x700.kind", "Kind", base.DEC, KINDS)
f.binding_id = ProtoField.uint64("x700.binding_id", "Binding id", base.DEC)
f.expires_in = ProtoField.uint32("x700.expires_in_s", "Expires in (s)", base.DEC)
f.expires_at = ProtoField.absolute_time("x700.expires_at_s", "Expires at", base.UTC)
f.created_at = ProtoField.absolute_time("x700.created_at_s", "Created at", base.UTC)
f.created = ProtoField.uint8("x700.created", "Created", base.DEC, { [0] = "no (already existed)", [1] = "yes" })
f.flags = ProtoField.uint8("x700.flags", "Flags", base.HEX)
f.record = ProtoField.bool("x700.record", "Record calls", 8, nil, 0x01)
f.tenant = ProtoField.uint32("x700.tenant", "Tenant", base.DEC)
f.ttl = ProtoField.uint32("x700.ttl", "TTL (s)", base.DEC)
f.direction = ProtoField.uint8("x700.direction", "Direction", base.DEC, DIRECTIONS)
f.order_len = ProtoField.uint8("x700.order_len", "Order length", base.DEC)
f.order = ProtoField.string("x700.order", "Order reference")
f.mode = ProtoField.uint8("x700.mode", "Mode", base.DEC, MODES)
f.recording = ProtoField.uint8("x700.recording", "Recording", base.DEC)
f.mask = ProtoField.uint8("x700.mask", "Update mask", base.HEX)
f.selector = ProtoField.uint8("x700.selector", "Selector", base.DEC, SELECTORS)
f.version = ProtoField.uint16("x700.version", "Version", base.DEC)
f.role = ProtoField.uint8("x700.role", "Role", base.DEC, ROLES)
f.credential_len = ProtoField.uint8("x700.credential_len", "Credential length", base.DEC)
f.credential = ProtoField.bytes("x700.credential", "Credential")
f.shard_count = ProtoField.uint16("x700.shard_count", "Shard count", base.DEC)
f.node_id = ProtoField.uint32("x700.node_id", "Node id", base.DEC)
f.leader_hint = ProtoField.uint32("x700.leader_hint", "Leader hint", base.DEC)
f.version_min = ProtoField.uint16("x700.version_min", "Lowest version", base.DEC)
f.version_max = ProtoField.uint16("x700.version_max", "Highest version", base.DEC)
f.index = ProtoField.uint64("x700.index", "Log index", base.DEC)
f.timeout_ms = ProtoField.uint32("x700.timeout_ms", "Timeout (ms)", base.DEC)
f.applied_index = ProtoField.uint64("x700.applied_index", "Applied index", base.DEC)
f.leader_id = ProtoField.uint64("x700.leader_id", "Leader id", base.DEC)
f.leader_addr = ProtoField.string("x700.leader_addr", "Leader address")
f.member_id = ProtoField.uint64("x700.member_id", "Member id", base.DEC)
f.text = ProtoField.string("x700.text", "Text")
f.body = ProtoField.bytes("x700.body", "Body")

local e_malformed = ProtoExpert.new("x700.malformed", "Malformed x700 frame", expert.group.MALFORMED, expert.severity.ERROR)
local e_framing = ProtoExpert.new("x700.framing_lost", "Impossible frame length: the stream's framing is lost", expert.group.MALFORMED, expert.severity.ERROR)
local e_bad_number = ProtoExpert.new("x700.bad_number", "Not a well-formed BCD number", expert.group.MALFORMED, expert.severity.WARN)
local e_extra = ProtoExpert.new("x700.unexpected_body", "Body bytes this version does not define", expert.group.PROTOCOL, expert.severity.NOTE)
local e_unknown = ProtoExpert.new("x700.unknown_opcode", "Unknown opcode", expert.group.PROTOCOL, expert.severity.WARN)
local e_refused = ProtoExpert.new("x700.refused", "Refused request", expert.group.RESPONSE_CODE, expert.severity.NOTE)
local e_no_request = ProtoExpert.new("x700.no_request", "Answer without a request in this capture", expert.group.SEQUENCE, expert.severity.NOTE)
x700.experts = { e_malformed, e_framing, e_bad_number, e_extra, e_unknown, e_refused, e_no_request }

x700.prefs.tcp_port = Pref.uint("TCP port", DEFAULT_PORT, "TCP port of x700 nodes (0: none)")
x700.prefs.udp_port = Pref.uint("UDP port", DEFAULT_PORT, "UDP port of x700 nodes (0: none)")

-- ---- numbers ----

-- Decodes an 8-byte BCD number (section 4) to its digits: "" for "no
-- number" (eight zero bytes), nil for a malformed field.
local function bcd_digits(range)
    local digits = {}
    local all_zero = true
    local filled = false
    for i = 0, range:len() - 1 do
        local byte = range:range(i, 1):uint()
        if byte ~= 0 then
            all_zero = false
        end
        for _, nibble in ipairs({ math.floor(byte / 16), byte % 16 }) do
            if nibble == 0xF then
                filled = true
            elseif filled or nibble > 9 then
                -- A digit after the fill, or a nibble that is no digit
                -- (an all-zero field never gets here: 0 is a digit).
                return nil
            else
                digits[#digits + 1] = tostring(nibble)
            end
        end
    end
    if all_zero then
        return ""
    end
    if not filled or #digits == 0 then
        return nil
    end
    return table.concat(digits)
end

-- Adds a number field: its digits, or the raw bytes flagged as malformed.
local function add_number(tree, field, range, what)
    local digits = bcd_digits(range)
    if digits == nil then
        local item = tree:add(field, range, "?" .. tostring(range:bytes()))
        item:add_proto_expert_info(e_bad_number)
        return "?"
    end
    local item = tree:add(field, range, digits)
    if digits == "" then
        item:set_text(what .. ": (none)")
    end
    return digits
end

-- Adds a 2-byte BCD extension (`FF FF`: none).
local function add_extension(tree, range)
    if range:uint() == 0xFFFF then
        tree:add(f.extension, range, ""):set_text("Extension: (none)")
        return ""
    end
    return add_number(tree, f.extension, range, "Extension")
end

-- Adds bytes that must be zero.
local function add_reserved(tree, range)
    local item = tree:add(f.reserved, range)
    for i = 0, range:len() - 1 do
        if range:range(i, 1):uint() ~= 0 then
            item:add_proto_expert_info(e_malformed, "Reserved bytes are not zero")
            break
        end
    end
end

-- Text (JSON, a cluster member, a reason); printable as it stands.
local function add_text(tree, range)
    if range:len() > 0 then
        tree:add(f.text, range, range:string(ENC_UTF_8))
    end
end

-- ---- bodies ----

-- Each body dissector takes (body range, tree) and returns a short summary
-- for the Info column. `body` is nil when the body is empty.

local function lookup_request(body, tree)
    local caller = add_number(tree, f.caller, body:range(0, 8), "Caller")
    local x = add_number(tree, f.x, body:range(8, 8), "X")
    local extension = add_extension(tree, body:range(16, 2))
    tree:add(f.kind, body:range(18, 1))
    add_reserved(tree, body:range(19, 1))
    local summary = "caller=" .. caller .. " X=" .. x
    if extension ~= "" then
        summary = summary .. " ext=" .. extension
    end
    return summary
end

local function route_answer(body, tree)
    local callee = add_number(tree, f.callee, body:range(0, 8), "Callee")
    add_number(tree, f.display, body:range(8, 8), "Display")
    tree:add_le(f.binding_id, body:range(16, 8))
    tree:add_le(f.expires_in, body:range(24, 4))
    local flags = tree:add(f.flags, body:range(28, 1))
    flags:add(f.record, body:range(28, 1))
    add_reserved(tree, body:range(29, 3))
    return "callee=" .. callee
end

local function bind_request(body, tree, opcode)
    local x = add_number(tree, f.x, body:range(0, 8), "X")
    local a = add_number(tree, f.a, body:range(8, 8), "A")
    local b
    if opcode == 0x22 then
        b = "ext " .. add_extension(tree, body:range(16, 2))
        add_reserved(tree, body:range(18, 6))
    else
        b = add_number(tree, f.b, body:range(16, 8), "B")
    end
    tree:add_le(f.tenant, body:range(24, 4))
    tree:add_le(f.ttl, body:range(28, 4))
    tree:add(f.direction, body:range(32, 1))
    local flags = tree:add(f.flags, body:range(33, 1))
    flags:add(f.record, body:range(33, 1))
    local order_len = body:range(34, 1):uint()
    tree:add(f.order_len, body:range(34, 1))
    add_reserved(tree, body:range(35, 1))
    if order_len >= 1 and order_len <= 32 then
        tree:add(f.order, body:range(36, order_len))
    else
        tree:add(f.order, body:range(36, 32)):add_proto_expert_info(e_malformed, "Order length outside 1 to 32")
    end
    if b == "" then
        b = "none"
    end
    return "X=" .. x .. " A=" .. a .. " B=" .. b
end

local function bind_answer(body, tree)
    tree:add_le(f.binding_id, body:range(0, 8))
    tree:add_le(f.expires_at, body:range(8, 4))
    tree:add(f.created, body:range(12, 1))
    add_reserved(tree, body:range(13, 3))
    return "id=" .. tostring(body:range(0, 8):le_uint64())
end

-- Section 7.8: the answer to QUERY, UPDATE and UNBIND.
local function binding_body(body, tree)
    tree:add_le(f.binding_id, body:range(0, 8))
    local mode = body:range(8, 1):uint()
    tree:add(f.mode, body:range(8, 1))
    tree:add(f.direction, body:range(9, 1))
    tree:add(f.recording, body:range(10, 1))
    local order_len = body:range(11, 1):uint()
    tree:add(f.order_len, body:range(11, 1))
    tree:add_le(f.tenant, body:range(12, 4))
    local x = add_number(tree, f.x, body:range(16, 8), "X")
    local a = add_number(tree, f.a, body:range(24, 8), "A")
    if mode == 3 then
        add_extension(tree, body:range(32, 2))
    else
        add_number(tree, f.b, body:range(32, 8), "B")
    end
    tree:add_le(f.ttl, body:range(40, 4))
    tree:add_le(f.expires_at, body:range(44, 4))
    tree:add_le(f.created_at, body:range(48, 4))
    add_reserved(tree, body:range(52, 4))
    if order_len >= 1 and order_len <= 32 then
        tree:add(f.order, body:range(56, order_len))
    end
    return "id=" .. tostring(body:range(0, 8):le_uint64()) .. " X=" .. x .. " A=" .. a
end

local function update_request(body, tree)
    tree:add_le(f.binding_id, body:range(0, 8))
    tree:add(f.mask, body:range(8, 1))
    tree:add(f.direction, body:range(9, 1))
    tree:add(f.recording, body:range(10, 1))
    add_reserved(tree, body:range(11, 1))
    tree:add_le(f.ttl, body:range(12, 4))
    add_number(tree, f.b, body:range(16, 8), "B")
    return "id=" .. tostring(body:range(0, 8):le_uint64())
end

local function unbind_request(body, tree)
    local selector = body:range(0, 1):uint()
    tree:add(f.selector, body:range(0, 1))
    add_reserved(tree, body:range(1, 7))
    if selector == 0 then
        tree:add_le(f.binding_id, body:range(8, 8))
        return "id=" .. tostring(body:range(8, 8):le_uint64())
    end
    local x = add_number(tree, f.x, body:range(16, 8), "X")
    if selector == 2 then
        return "X=" .. x .. " ext=" .. add_extension(tree, body:range(24, 2))
    end
    return "X=" .. x .. " party=" .. add_number(tree, f.party, body:range(24, 8), "Party")
end

local function hello_request(body, tree)
    tree:add_le(f.version, body:range(0, 2))
    local role = body:range(2, 1):uint()
    tree:add(f.role, body:range(2, 1))
    local credential_len = body:range(3, 1):uint()
    local item = tree:add(f.credential_len, body:range(3, 1))
    if body:len() ~= 4 + credential_len then
        item:add_proto_expert_info(e_malformed, "Body is not 4 + credential length bytes")
    elseif credential_len > 0 then
        tree:add(f.credential, body:range(4, credential_len))
    end
    return "role=" .. (ROLES[role] or tostring(role))
end

local function hello_answer(body, tree)
    tree:add_le(f.version, body:range(0, 2))
    tree:add_le(f.shard_count, body:range(2, 2))
    tree:add_le(f.node_id, body:range(4, 4))
    tree:add_le(f.leader_hint, body:range(8, 4))
    tree:add_le(f.version_min, body:range(12, 2))
    tree:add_le(f.version_max, body:range(14, 2))
    return "node " .. body:range(4, 4):le_uint()
end

local function wait_index_request(body, tree)
    tree:add_le(f.index, body:range(0, 8))
    tree:add_le(f.timeout_ms, body:range(8, 4))
    return "index=" .. tostring(body:range(0, 8):le_uint64())
end

local function applied_index(body, tree)
    tree:add_le(f.applied_index, body:range(0, 8))
    return "applied=" .. tostring(body:range(0, 8):le_uint64())
end

local function binding_id_only(body, tree)
    tree:add_le(f.binding_id, body:range(0, 8))
    return "id=" .. tostring(body:range(0, 8):le_uint64())
end

local function member_id(body, tree)
    tree:add_le(f.member_id, body:range(0, 8))
    return "member " .. tostring(body:range(0, 8):le_uint64())
end

local function text_body(body, tree)
    add_text(tree, body)
    return ""
end

-- Request bodies by opcode: exact length (or a check) and dissector.
local REQUESTS = {
    [0x01] = { check = function(n) return n >= 4 end, dissect = hello_request },
    [0x02] = { len = 0 },
    [0x03] = { len = 0 },
    [0x10] = { len = 20, dissect = lookup_request },
    [0x11] = { len = 12, dissect = wait_index_request },
    [0x20] = { len = 68, dissect = bind_request },
    [0x21] = { len = 68, dissect = bind_request },
    [0x22] = { len = 68, dissect = bind_request },
    [0x23] = { len = 24, dissect = update_request },
    [0x24] = { len = 32, dissect = unbind_request },
    [0x25] = { len = 8, dissect = binding_id_only },
    [0x30] = { len = 0 },
    [0x31] = { check = function(n) return n >= 1 and n <= 4096 end, dissect = text_body },
    [0x32] = { check = function(n) return n >= 1 and n <= 4096 end, dissect = text_body },
    [0x33] = { len = 8, dissect = member_id },
    [0x34] = { len = 0 },
}

-- `OK` answer bodies by opcode.
local ANSWERS = {
    [0x01] = { len = 16, dissect = hello_answer },
    [0x02] = { len = 0 },
    [0x03] = { text = true },
    [0x10] = { len = 32, dissect = route_answer },
    [0x11] = { len = 8, dissect = applied_index },
    [0x20] = { len = 16, dissect = bind_answer },
    [0x21] = { len = 16, dissect = bind_answer },
    [0x22] = { len = 16, dissect = bind_answer },
    [0x23] = { len = 88, dissect = binding_body },
    [0x24] = { len = 88, dissect = binding_body },
    [0x25] = { len = 88, dissect = binding_body },
    [0x30] = { text = true },
    [0x31] = { len = 0 },
    [0x32] = { len = 0 },
    [0x33] = { len = 0 },
    [0x34] = { text = true },
}

-- Bodies of the refusals that carry one (section 6 and 8).
local function refusal_body(status, body, tree)
    local n = body:len()
    if (status == 16 or status == 43) and n >= 8 then
        if status == 16 then
            tree:add_le(f.binding_id, body:range(0, 8))
        else
            tree:add_le(f.applied_index, body:range(0, 8))
        end
        if n > 8 then
            tree:add(f.body, body:range(8)):add_proto_expert_info(e_extra)
        end
    elseif status == 34 and n >= 4 then
        tree:add_le(f.version_min, body:range(0, 2))
        tree:add_le(f.version_max, body:range(2, 2))
    elseif status == 37 and n >= 9 then
        tree:add_le(f.leader_id, body:range(0, 8))
        local addr_len = body:range(8, 1):uint()
        if 9 + addr_len <= n then
            if addr_len > 0 then
                tree:add(f.leader_addr, body:range(9, addr_len))
            end
        else
            tree:add(f.body, body:range(8)):add_proto_expert_info(e_malformed, "Leader address runs past the frame")
        end
    elseif status == 18 or status == 36 then
        -- A reason in text (cluster changes, CLUSTER_VERIFY).
        add_text(tree, body)
    else
        tree:add(f.body, body):add_proto_expert_info(e_extra)
    end
end

-- ---- request and answer linking ----

-- Per conversation and request id: the frame numbers of requests and of
-- their answers, filled on the first pass and read on later ones. A
-- request id may be reused once its answer came, so each id keeps a list.
local links = {}
-- (frame number, frame index in it) -> its link record.
local link_of_pdu = {}
-- Frames of a packet seen so far in this pass, to number them.
local pdu_counter = {}

function x700.init()
    links = {}
    link_of_pdu = {}
    pdu_counter = {}
end

local function link(pinfo, tree, is_answer, request_id, transport)
    local number = pinfo.number
    local count = (pdu_counter[number] or 0) + 1
    pdu_counter[number] = count
    local pdu_key = number .. ":" .. count
    local record = link_of_pdu[pdu_key]
    if record == nil and not pinfo.visited then
        local client, server
        if is_answer then
            client = tostring(pinfo.dst) .. ":" .. pinfo.dst_port
            server = tostring(pinfo.src) .. ":" .. pinfo.src_port
        else
            client = tostring(pinfo.src) .. ":" .. pinfo.src_port
            server = tostring(pinfo.dst) .. ":" .. pinfo.dst_port
        end
        local key = transport .. " " .. client .. " " .. server .. " " .. request_id
        local list = links[key]
        if list == nil then
            list = {}
            links[key] = list
        end
        if is_answer then
            -- The oldest request of this id still waiting for its answer.
            for _, candidate in ipairs(list) do
                if candidate.answer == nil then
                    candidate.answer = number
                    candidate.answer_time = pinfo.abs_ts
                    record = candidate
                    break
                end
            end
            if record == nil then
                record = { answer = number }
            end
        else
            record = { request = number, request_time = pinfo.abs_ts }
            list[#list + 1] = record
        end
        link_of_pdu[pdu_key] = record
    end
    if record == nil then
        return
    end
    if is_answer then
        if record.request ~= nil then
            tree:add(f.request_in, record.request):set_generated()
            local delta = record.answer_time - record.request_time
            if delta >= 0 then
                local seconds = math.floor(delta)
                tree:add(f.answer_time, NSTime.new(seconds, math.floor((delta - seconds) * 1e9 + 0.5))):set_generated()
            end
        else
            tree:add_proto_expert_info(e_no_request)
        end
    elseif record.answer ~= nil then
        tree:add(f.response_in, record.answer):set_generated()
    end
end

-- ---- frames ----

-- Whether this frame travels from the node to a client: its source port
-- is the port the dissector was bound to.
local function is_answer_of(pinfo, preferred_port)
    local port = pinfo.match_uint
    if port == nil or port == 0 then
        port = preferred_port
    end
    if pinfo.src_port == port and pinfo.dst_port ~= port then
        return true
    end
    return false
end

-- Dissects one whole frame in `tvb` (its length field already checked
-- against the bytes there). Returns a summary for the Info column.
local function dissect_frame(tvb, pinfo, root, is_answer, transport)
    local length = tvb:range(0, 4):le_uint()
    local opcode = tvb:range(4, 1):uint()
    local status = tvb:range(5, 1):uint()
    local request_id = tvb:range(8, 4):le_uint()
    local name = OPCODES[opcode] or string.format("0x%02x", opcode)
    local tree = root:add(x700, tvb:range(0, length))
    tree:append_text(", " .. name .. (is_answer and " answer" or " request") .. ", id " .. request_id)
    tree:add_le(f.length, tvb:range(0, 4))
    local opcode_item = tree:add(f.opcode, tvb:range(4, 1))
    local status_item = tree:add(f.status, tvb:range(5, 1))
    if not is_answer then
        status_item:set_text("Status: " .. status .. " (requests send 0)")
    end
    add_reserved(tree, tvb:range(6, 2))
    tree:add_le(f.request_id, tvb:range(8, 4))
    tree:add(f.is_answer, is_answer):set_generated()
    link(pinfo, tree, is_answer, request_id, transport)

    local body = nil
    local body_len = length - HEADER_BYTES
    if body_len > 0 then
        body = tvb:range(HEADER_BYTES, body_len)
    end
    local summary = name .. (is_answer and " answer " or " ") .. request_id
    if is_answer then
        summary = summary .. " " .. (STATUSES[status] or tostring(status))
    end

    local spec
    if is_answer then
        if status ~= 0 then
            status_item:add_proto_expert_info(e_refused, "Refused: " .. (STATUSES[status] or tostring(status)))
            if body ~= nil then
                refusal_body(status, body, tree)
            end
            return summary
        end
        spec = ANSWERS[opcode]
    else
        spec = REQUESTS[opcode]
    end
    if spec == nil then
        opcode_item:add_proto_expert_info(e_unknown)
        if body ~= nil then
            tree:add(f.body, body)
        end
        return summary
    end
    if spec.text then
        if body ~= nil then
            add_text(tree, body)
        end
        return summary
    end
    local fits
    if spec.check ~= nil then
        fits = spec.check(body_len)
    else
        fits = body_len == spec.len
    end
    if not fits then
        local item
        if body ~= nil then
            item = tree:add(f.body, body)
        else
            item = tree
        end
        item:add_proto_expert_info(e_malformed, "Body of " .. body_len .. " bytes does not fit " .. name)
        return summary .. " [malformed]"
    end
    if spec.dissect ~= nil and body ~= nil then
        local detail = spec.dissect(body, tree, opcode)
        if detail ~= nil and detail ~= "" then
            summary = summary .. " " .. detail
        end
    end
    return summary
end

local function append_info(pinfo, summary)
    local info = tostring(pinfo.cols.info)
    if info == "" then
        pinfo.cols.info:set(summary)
    else
        pinfo.cols.info:append("; " .. summary)
    end
end

-- Whether a length field can be trusted.
local function length_fits(length, is_answer)
    if length < HEADER_BYTES then
        return false
    end
    if is_answer then
        return length <= ANSWER_FRAME_BYTES_MAX
    end
    return length <= FRAME_BYTES_MAX
end

-- TCP: the length of the frame at `offset` for dissect_tcp_pdus. An
-- impossible length takes the rest of the segment, which the frame
-- dissector then flags (the node itself closes such a connection).
local function tcp_frame_length(tvb, pinfo, offset)
    if tvb:len() - offset < 4 then
        return tvb:len() - offset
    end
    local length = tvb:range(offset, 4):le_uint()
    if not length_fits(length, is_answer_of(pinfo, x700.prefs.tcp_port)) then
        return tvb:len() - offset
    end
    return length
end

local function tcp_frame(tvb, pinfo, root)
    local is_answer = is_answer_of(pinfo, x700.prefs.tcp_port)
    if tvb:len() < 4 then
        root:add(x700, tvb:range()):add_proto_expert_info(e_malformed, "Frame continues in a later segment (TCP reassembly off?)")
        return tvb:len()
    end
    local length = tvb:range(0, 4):le_uint()
    if not length_fits(length, is_answer) then
        local tree = root:add(x700, tvb:range())
        tree:add_le(f.length, tvb:range(0, 4)):add_proto_expert_info(e_framing)
        append_info(pinfo, "[framing lost]")
        return tvb:len()
    end
    if tvb:len() < length then
        -- Only when the TCP preference "Allow subdissector to reassemble
        -- TCP streams" is off: dissect_tcp_pdus then hands over a part.
        root:add(x700, tvb:range()):add_proto_expert_info(e_malformed, "Frame continues in a later segment (TCP reassembly off?)")
        append_info(pinfo, "[part of a frame]")
        return tvb:len()
    end
    append_info(pinfo, dissect_frame(tvb, pinfo, root, is_answer, "tcp"))
    return length
end

local function dissect_tcp(tvb, pinfo, root)
    pinfo.cols.protocol:set("x700")
    pinfo.cols.info:set("")
    pdu_counter[pinfo.number] = 0
    -- A frame is at least its 4-byte length field long before its length
    -- can be read.
    dissect_tcp_pdus(tvb, root, 4, tcp_frame_length, tcp_frame, true)
    return tvb:len()
end

-- UDP: LOOKUP frames back to back; the server stops at the first
-- impossible length or a frame that runs past the datagram (section 2).
local function dissect_udp(tvb, pinfo, root)
    pinfo.cols.protocol:set("x700")
    pinfo.cols.info:set("")
    pdu_counter[pinfo.number] = 0
    local is_answer = is_answer_of(pinfo, x700.prefs.udp_port)
    local offset = 0
    local total = tvb:len()
    local frames = 0
    while offset < total do
        if total - offset < HEADER_BYTES then
            root:add(x700, tvb:range(offset)):add_proto_expert_info(e_malformed, "Datagram ends inside a frame header")
            break
        end
        local length = tvb:range(offset, 4):le_uint()
        if not length_fits(length, is_answer) then
            local tree = root:add(x700, tvb:range(offset))
            tree:add_le(f.length, tvb:range(offset, 4)):add_proto_expert_info(e_framing)
            break
        end
        if offset + length > total then
            root:add(x700, tvb:range(offset)):add_proto_expert_info(e_malformed, "Datagram ends inside a frame")
            break
        end
        append_info(pinfo, dissect_frame(tvb:range(offset, length):tvb(), pinfo, root, is_answer, "udp"))
        offset = offset + length
        frames = frames + 1
    end
    if frames > 1 then
        pinfo.cols.info:prepend(frames .. " frames: ")
    end
    return total
end

function x700.dissector(tvb, pinfo, root)
    -- Any error inside is caught here, so a capture never shows a Lua
    -- error: the packet gets an expert note instead.
    local ok, result = pcall(function()
        if pinfo.port_type == 3 then
            return dissect_udp(tvb, pinfo, root)
        end
        return dissect_tcp(tvb, pinfo, root)
    end)
    if not ok then
        root:add(x700, tvb:range()):add_proto_expert_info(e_malformed, "Undecodable: " .. tostring(result))
        return tvb:len()
    end
    return result
end

-- ---- registration ----

local registered_tcp = 0
local registered_udp = 0

local function register_ports()
    local tcp = DissectorTable.get("tcp.port")
    local udp = DissectorTable.get("udp.port")
    if registered_tcp ~= 0 then
        tcp:remove(registered_tcp, x700)
    end
    if registered_udp ~= 0 then
        udp:remove(registered_udp, x700)
    end
    registered_tcp = x700.prefs.tcp_port
    registered_udp = x700.prefs.udp_port
    if registered_tcp ~= 0 then
        tcp:add(registered_tcp, x700)
    end
    if registered_udp ~= 0 then
        udp:add(registered_udp, x700)
    end
end

function x700.prefs_changed()
    register_ports()
end

register_ports()
-- "Decode As" offers x700 on any TCP or UDP port.
DissectorTable.get("tcp.port"):add_for_decode_as(x700)
DissectorTable.get("udp.port"):add_for_decode_as(x700)
