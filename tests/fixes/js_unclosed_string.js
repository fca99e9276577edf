function formatUser(user) {
  const label = 'User: + user.name;
  return label.toUpperCase();
}

console.log(formatUser({ name: "ada" }));
