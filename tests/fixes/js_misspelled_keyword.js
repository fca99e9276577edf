function findIndex(list, target) {
  for (let i = 0; i < list.length; i++) {
    if (list[i] === target) {
      retrun i;
    }
  }
  return -1;
}
