// Test support, for tests/ only: a strict JSON (RFC 8259) parser, so that
// tests can prove that what usmp writes for machines (the Chrome trace of
// runtime/ktr.h, the counter dump of runtime/counters.h, usmp-stress --json)
// parses, and then look inside it.
//
//     test::json doc;
//     std::string err;
//     REQUIRE(test::json_parse(text, doc, &err));  // err: what, at which byte
//     for (const test::json &ev : doc["traceEvents"].array()) ...
//
// Strict: one value and only whitespace around it, no trailing commas, no
// comments, no leading zeros, no bare control characters in strings, valid
// \u escapes (surrogate pairs joined); nesting is bounded (256 levels).
// Numbers are kept as doubles.  Objects keep member order; a repeated name
// is an error (RFC 8259 allows it but nothing usmp writes repeats one).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace usmp::test {

struct json {
	enum kind_t { null, boolean, number, string, array_k, object_k };

	kind_t kind = null;
	bool b = false;
	double num = 0;
	std::string str;
	std::vector<json> items;                          // array elements
	std::vector<std::pair<std::string, json>> members; // object members

	bool is_object() const noexcept { return kind == object_k; }
	bool is_array() const noexcept { return kind == array_k; }
	bool is_string() const noexcept { return kind == string; }
	bool is_number() const noexcept { return kind == number; }

	// The member named k, or nullptr (also when this is not an object).
	const json *find(std::string_view k) const noexcept;
	bool has(std::string_view k) const noexcept { return find(k) != nullptr; }
	// The member named k; a shared null value when there is none, so that
	// chains like doc["a"]["b"].str read as "absent" without a crash.
	const json &operator[](std::string_view k) const noexcept;
	// The elements of an array (empty for anything else).
	const std::vector<json> &array() const noexcept;
};

// Parse all of text into out.  On failure returns false and, if err is
// given, says what was wrong and at which byte offset.
bool json_parse(std::string_view text, json &out, std::string *err = nullptr);

} // namespace usmp::test
