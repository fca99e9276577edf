interface Range {
  start: number;
  end: number;
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}

const ranges: Range[] = [{ start: 0, end: 5 }, { start: 3, end: 9 };
console.log(overlaps(ranges[0], ranges[1]));
