// The parsed template: expressions and statements as Jinja2's parser builds them. One node
// struct per family, tagged by kind, keeps the parser and evaluator short.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace tune::tmpl {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // args
    kTuple,      // args
    kDict,       // args: key, value, key, value, ...
    kGetattr,    // args[0].name
    kGetitem,    // args[0][args[1]]
    kSlice,      // args[0][args[1]:args[2]:args[3]] (null where omitted)
    kCall,       // args[0](args[1..], kwargs)
    kFilter,     // args[0] | name(args[1..], kwargs); args[0] null in a filter block
    kTest,       // args[0] is [not] name(args[1..], kwargs)
    kUnary,      // op args[0]: "not", "-", "+"
    kBinary,     // args[0] op args[1]: + - * / // % ** ~ and or
    kCompare,    // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in notin
    kCondition,  // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line = 0, column = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;  // kTest: `is not`
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kPrint,        // {{ expr }}
    kIf,           // conditions[i] -> bodies[i]; else_body
    kFor,          // for target in expr [if filter]: body; else_body
    kSet,          // set target = expr
    kSetBlock,     // set target [| filter] ... endset (filter in `filter`)
    kMacro,        // macro name(params) body
    kCallBlock,    // call[(params)] expr: body is the caller
    kFilterBlock,  // filter <filter chain in `filter`>: body
    kBreak,
    kContinue,
    kGeneration,  // generation: body
  };
  Kind kind;
  int line = 0, column = 0;
  std::string text;
  ExprPtr target, expr, filter;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body body, else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro / caller parameters, defaults
};

}  // namespace tune::tmpl
