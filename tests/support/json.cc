// The strict JSON parser of support/json.h: recursive descent over the
// grammar of RFC 8259, section 2-7, one function per production.
#include "support/json.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace usmp::test {

namespace {

constexpr int MAX_DEPTH = 256;

struct parser {
	std::string_view s;
	std::size_t i = 0;
	std::string err;

	bool fail(const char *what)
	{
		if (err.empty()) {
			char buf[96];
			std::snprintf(buf, sizeof(buf), "%s at byte %zu", what, i);
			err = buf;
		}
		return false;
	}

	void ws()
	{
		while (i < s.size() &&
		    (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
			i++;
	}

	bool literal(std::string_view word)
	{
		if (s.substr(i, word.size()) != word)
			return fail("invalid literal");
		i += word.size();
		return true;
	}

	bool hex4(unsigned &v)
	{
		if (i + 4 > s.size())
			return fail("truncated \\u escape");
		v = 0;
		for (int k = 0; k < 4; k++) {
			char c = s[i++];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				v |= c - 'A' + 10;
			else
				return fail("bad hex digit in \\u escape");
		}
		return true;
	}

	static void utf8(std::string &out, unsigned cp)
	{
		if (cp < 0x80) {
			out += static_cast<char>(cp);
		} else if (cp < 0x800) {
			out += static_cast<char>(0xc0 | (cp >> 6));
			out += static_cast<char>(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			out += static_cast<char>(0xe0 | (cp >> 12));
			out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
			out += static_cast<char>(0x80 | (cp & 0x3f));
		} else {
			out += static_cast<char>(0xf0 | (cp >> 18));
			out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
			out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
			out += static_cast<char>(0x80 | (cp & 0x3f));
		}
	}

	// string = quotation-mark *char quotation-mark; s[i] is the quote.
	bool string(std::string &out)
	{
		i++;
		for (;;) {
			if (i >= s.size())
				return fail("unterminated string");
			unsigned char c = static_cast<unsigned char>(s[i]);
			if (c == '"') {
				i++;
				return true;
			}
			if (c < 0x20)
				return fail("control character in string");
			if (c != '\\') {
				out += static_cast<char>(c);
				i++;
				continue;
			}
			if (++i >= s.size())
				return fail("unterminated escape");
			char e = s[i++];
			switch (e) {
			case '"': out += '"'; break;
			case '\\': out += '\\'; break;
			case '/': out += '/'; break;
			case 'b': out += '\b'; break;
			case 'f': out += '\f'; break;
			case 'n': out += '\n'; break;
			case 'r': out += '\r'; break;
			case 't': out += '\t'; break;
			case 'u': {
				unsigned cp;
				if (!hex4(cp))
					return false;
				if (cp >= 0xd800 && cp < 0xdc00) {
					unsigned lo;
					if (s.substr(i, 2) != "\\u")
						return fail("lone high surrogate");
					i += 2;
					if (!hex4(lo))
						return false;
					if (lo < 0xdc00 || lo >= 0xe000)
						return fail("bad low surrogate");
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					return fail("lone low surrogate");
				}
				utf8(out, cp);
				break;
			}
			default:
				i--;
				return fail("bad escape");
			}
		}
	}

	// number = [ minus ] int [ frac ] [ exp ]
	bool number(double &out)
	{
		std::size_t start = i;
		auto digit = [&] { return i < s.size() && s[i] >= '0' && s[i] <= '9'; };
		if (i < s.size() && s[i] == '-')
			i++;
		if (!digit())
			return fail("bad number");
		if (s[i] == '0') {
			i++;
			if (digit())
				return fail("leading zero in number");
		} else {
			while (digit())
				i++;
		}
		if (i < s.size() && s[i] == '.') {
			i++;
			if (!digit())
				return fail("no digit after decimal point");
			while (digit())
				i++;
		}
		if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
			i++;
			if (i < s.size() && (s[i] == '+' || s[i] == '-'))
				i++;
			if (!digit())
				return fail("no digit in exponent");
			while (digit())
				i++;
		}
		std::string text(s.substr(start, i - start));
		out = std::strtod(text.c_str(), nullptr);
		return true;
	}

	bool value(json &v, int depth)
	{
		if (depth > MAX_DEPTH)
			return fail("nested too deeply");
		ws();
		if (i >= s.size())
			return fail("value expected");
		switch (s[i]) {
		case '{':
			return object(v, depth);
		case '[':
			return array(v, depth);
		case '"':
			v.kind = json::string;
			return string(v.str);
		case 't':
			v.kind = json::boolean;
			v.b = true;
			return literal("true");
		case 'f':
			v.kind = json::boolean;
			v.b = false;
			return literal("false");
		case 'n':
			v.kind = json::null;
			return literal("null");
		default:
			v.kind = json::number;
			return number(v.num);
		}
	}

	bool array(json &v, int depth)
	{
		v.kind = json::array_k;
		i++;
		ws();
		if (i < s.size() && s[i] == ']') {
			i++;
			return true;
		}
		for (;;) {
			v.items.emplace_back();
			if (!value(v.items.back(), depth + 1))
				return false;
			ws();
			if (i >= s.size())
				return fail("unterminated array");
			if (s[i] == ']') {
				i++;
				return true;
			}
			if (s[i] != ',')
				return fail("',' or ']' expected in array");
			i++;
		}
	}

	bool object(json &v, int depth)
	{
		v.kind = json::object_k;
		i++;
		ws();
		if (i < s.size() && s[i] == '}') {
			i++;
			return true;
		}
		for (;;) {
			ws();
			if (i >= s.size() || s[i] != '"')
				return fail("member name expected");
			std::string name;
			if (!string(name))
				return false;
			if (v.find(name) != nullptr)
				return fail("repeated member name");
			ws();
			if (i >= s.size() || s[i] != ':')
				return fail("':' expected");
			i++;
			v.members.emplace_back(std::move(name), json{});
			if (!value(v.members.back().second, depth + 1))
				return false;
			ws();
			if (i >= s.size())
				return fail("unterminated object");
			if (s[i] == '}') {
				i++;
				return true;
			}
			if (s[i] != ',')
				return fail("',' or '}' expected in object");
			i++;
		}
	}
};

const json g_null;
const std::vector<json> g_empty;

} // namespace

const json *
json::find(std::string_view k) const noexcept
{
	if (kind != object_k)
		return nullptr;
	for (const auto &m : members)
		if (m.first == k)
			return &m.second;
	return nullptr;
}

const json &
json::operator[](std::string_view k) const noexcept
{
	const json *v = find(k);
	return v != nullptr ? *v : g_null;
}

const std::vector<json> &
json::array() const noexcept
{
	return kind == array_k ? items : g_empty;
}

bool
json_parse(std::string_view text, json &out, std::string *err)
{
	parser p;
	p.s = text;
	out = json{};
	bool ok = p.value(out, 0);
	if (ok) {
		p.ws();
		if (p.i != text.size())
			ok = p.fail("trailing characters after the value");
	}
	if (!ok && err != nullptr)
		*err = p.err;
	return ok;
}

} // namespace usmp::test
