// Package query implements the IoT Hub query language over twin documents:
// a lexer and parser that report errors with exact positions, an AST that a
// planner can inspect, and an evaluator over documents shaped like the JSON
// of GET /twins/{id} (map[string]any as encoding/json decodes it).
//
//	q, err := query.Parse("SELECT * FROM devices WHERE tags.location.plant = 'Redmond43'")
//	rows, err := q.Execute(scan) // scan: iter.Seq[map[string]any] over the collection
//
// # Language
//
//	SELECT [TOP n] * | item [AS alias] [, ...]
//	FROM devices | devices.modules | devices.jobs
//	[WHERE condition]
//	[GROUP BY expression [, ...]]
//
// Keywords and function names are case-insensitive. Expressions: paths
// (tags.location.plant, properties.reported['a key'], tags.list[0]),
// string literals in single or double quotes with the escapes \' \" \\
// \uXXXX (and JSON's \/ \b \f \n \r \t), decimal numbers with fraction and
// exponent, hexadecimal 0x numbers, true, false, null, undefined, arrays
// [a, b], the operators + - * / % = != <> < <= > >= IN NIN (and NOT IN),
// AND OR NOT with precedence NOT > AND > OR, and the functions IS_DEFINED,
// IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE,
// AS_NUMBER, STARTS_WITH (STARTSWITH), ENDS_WITH (ENDSWITH), CONTAINS,
// ARRAY_CONTAINS, CONCAT, LENGTH, LOWER, UPPER, SUBSTRING, INDEX_OF, ABS,
// CEILING, FLOOR, EXP, POWER, SQUARE, SIGN, SQRT. The SELECT list may hold
// the aggregates COUNT(), SUM(x), AVG(x), MIN(x), MAX(x), each as a whole
// item.
//
// # Paths
//
// A path may start with the collection's name: in FROM devices.modules,
// devices.modules.moduleId is moduleId (as the IoT Edge tools write it), and
// in FROM devices.jobs, devices.jobs.jobId is jobId. The path made of the
// collection name alone is the whole document. The names of the twin's own
// fields (deviceId, moduleId, etag, status, connectionState,
// lastActivityTime, tags, properties, properties.desired/reported,
// capabilities.iotEdge, ...) match in any case, so SELECT DeviceId returns
// "deviceId" as the docs show; names chosen by users, inside tags and
// properties, are case-sensitive.
//
// # Semantics where the docs are silent
//
// A missing property is undefined. Comparing undefined with anything, with
// = != <> < <= > >=, is undefined, and so is IN or NIN with an undefined
// left side. A condition selects a document only when it evaluates to the
// Boolean true.
//
// = and != compare primitives (null, Booleans, numbers, strings). Two values
// of different types are unequal: null != 'x' is true, 1 = '1' is false.
// Arrays and objects compare with nothing (the docs: "comparisons are
// supported only between primitive types"): the result is undefined.
// < <= > >= are defined only between two numbers, two strings (ordinal, by
// code point) or two Booleans (false < true); otherwise undefined.
//
// AND, OR and NOT use three-valued logic, non-Boolean operands counting as
// undefined: false AND undefined is false, true OR undefined is true, NOT
// undefined is undefined. So NOT (x = 1) does not select twins without x.
//
// Arithmetic is on numbers only; anything else, division or modulo by zero
// and results that are not finite are undefined. String functions given a
// non-string are undefined; LENGTH, SUBSTRING and INDEX_OF count Unicode
// code points. Arrays built with [..] leave out undefined elements.
//
// # Results
//
// SELECT * returns the documents themselves. A projection returns a new map
// per document, keyed by the alias, else the last name of a path (SELECT
// properties.reported.temperature gives "temperature"), else $1, $2, ...;
// items that evaluate to undefined are left out of the row, and two items
// with the same key are an error. Values in rows may share arrays and
// objects with the documents.
//
// GROUP BY groups by the values of its expressions, undefined being a value
// of its own; groups come out in the order their first document was seen.
// Non-aggregate items are evaluated on the group's first document. SELECT *
// with GROUP BY returns the first document of each group. Aggregates without
// GROUP BY give one row even over no documents. COUNT() counts documents;
// SUM and AVG consider numbers only (SUM of none is 0, AVG of none is left
// out); MIN and MAX consider Booleans, numbers and strings, ranked false <
// true < numbers < strings. Numbers come out as float64.
//
// TOP n applies to the final rows. Queries on devices.jobs support only
// SELECT * without GROUP BY, as the docs state. Queries longer than 8192
// characters are refused, as IoT Hub does.
//
// # Errors
//
// Parse returns *Error for syntax and semantic errors (unknown function or
// collection, wrong number of arguments, aggregates outside the SELECT list
// or mixed with plain items without GROUP BY, TOP that is not a
// non-negative integer), with the byte offset, line and column (in
// characters) of the offending token.
//
// # Performance
//
// Paths are split at parse time, constant sub-expressions are folded, IN
// lists of eight or more constants become a set, and evaluating a condition
// allocates nothing: values are a small struct passed by value that refers
// to the document's own strings, arrays and maps.
//
// # Running queries over an index
//
// Execute and Match take documents as encoding/json decodes them. An index
// that keeps twins in a form of its own evaluates over them through Doc:
// expressions read properties only through Doc.Lookup, with the *Path to
// read. Query.Paths lists every path of a query, and Path.Slot is its
// position there, so an index can work out once per query how to read each
// path and find that from the slot. MatchDoc and Project are Match and the
// projection of a matching document for a Doc; Groups computes the results
// of grouped queries (Grouped) from the matching Docs, in runs that can be
// merged in order, which lets a scan be split among processors. A Doc that
// is reused for the next document implements Keeper, for the first document
// of each group. To choose what to read, a planner can take the top-level
// conjuncts of WHERE (Conjuncts) that compare a path with constants:
// PathEquals (path = constant) and PathIn (path IN [constants]).
//
// Package querytest holds the fleets and conformance cases the evaluator is
// checked against, for indexes to be checked against them too.
package query
